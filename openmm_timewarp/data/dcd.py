"""Frame counting and truncation of the DCD files that ``app.DCDFile`` writes.

Resumable writers (MD runs in :mod:`openmm_timewarp.data.md`, Metropolis-Hastings chains in
:mod:`openmm_timewarp.sampling.chain_files`) record how many frames they committed; on resume they
cut the DCD back to that count, so that frames written after the last commit are neither lost nor
written twice.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path


def _dcd_layout(path: Path, num_atoms: int) -> tuple[int, int]:
    """Header and frame sizes in bytes of a non-periodic DCD file written by OpenMM."""
    with open(path, "rb") as handle:
        handle.seek(92)
        comment_bytes = struct.unpack("<i", handle.read(4))[0]
    return 104 + comment_bytes + 8, 3 * (4 * num_atoms + 8)


def count_dcd_frames(path: Path, num_atoms: int) -> int:
    """Complete frames in a DCD file (a frame cut short by an interruption does not count)."""
    header, frame = _dcd_layout(path, num_atoms)
    return max(0, (path.stat().st_size - header) // frame)


def truncate_dcd(path: Path, num_atoms: int, num_frames: int, interval: int) -> None:
    """Cut a DCD back to its first ``num_frames`` frames and make the header agree: the frame
    count, and the step of the last frame (``first step + (frames - 1) x interval``, as
    ``app.DCDFile`` writes it)."""
    header, frame = _dcd_layout(path, num_atoms)
    with open(path, "rb+") as handle:
        handle.seek(12)
        first_step = struct.unpack("<i", handle.read(4))[0]
        handle.truncate(header + num_frames * frame)
        handle.seek(8)
        handle.write(struct.pack("<i", num_frames))
        handle.seek(20)
        handle.write(struct.pack("<i", first_step + max(0, num_frames - 1) * interval))
        handle.flush()
        os.fsync(handle.fileno())
