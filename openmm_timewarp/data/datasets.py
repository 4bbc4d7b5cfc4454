"""Frames and (x(t), x(t + tau)) pairs from the trajectories that ``timewarp simulate`` writes.

The split is by time, within every trajectory, so that no pair and no frame is shared between
splits and neighbouring segments are separated by a gap:

- a trajectory of F committed frames is cut at ``floor(0.8 F)`` and ``floor(0.9 F)`` (the
  ``fractions`` argument) into train, validation and test segments, in that order in time;
- validation and test each begin ``gap`` frames after the end of the segment before them
  (``gap`` = tau for pairs, so a train pair ending at the boundary and a validation pair starting
  after it are at least tau apart);
- a pair (t, t + tau) belongs to a split only when both of its frames lie in that split's segment.

Only frames committed by the writer are read (``progress.json``), so a run still in progress can be
loaded; the segments then follow the frames present at load time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import openmm.app as app
import torch

from openmm_timewarp.data.dcd import count_dcd_frames
from openmm_timewarp.data.md import (
    PROGRESS_FILE,
    RUN_FILE,
    TOPOLOGY_FILE,
    TRAJECTORY_FILE,
    RunSettings,
)
from openmm_timewarp.data.peptides import backbone_torsions
from openmm_timewarp.optional import require

mdtraj = require("mdtraj")

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """One trajectory folder written by :class:`openmm_timewarp.data.md.TrajectoryRun`."""

    directory: Path
    settings: RunSettings
    num_frames: int  # committed frames

    @property
    def frame_interval_ps(self) -> float:
        return self.settings.frame_interval_ps

    def topology(self) -> app.Topology:
        return app.PDBFile(str(self.directory / TOPOLOGY_FILE)).topology

    def load(self) -> np.ndarray:
        """The committed frames, float32 [F, N, 3] in nm."""
        if self.num_frames == 0:
            return np.empty((0, self.topology().getNumAtoms(), 3), np.float32)
        with mdtraj.formats.DCDTrajectoryFile(str(self.directory / TRAJECTORY_FILE)) as handle:
            xyz, _, _ = handle.read(n_frames=self.num_frames)
        if len(xyz) != self.num_frames:
            raise ValueError(
                f"{self.directory / TRAJECTORY_FILE} holds {len(xyz)} frames, fewer than the "
                f"{self.num_frames} its {PROGRESS_FILE} records; the file was damaged."
            )
        return (xyz / 10.0).astype(np.float32)  # DCD stores angstroms

    def backbone_angles(self) -> tuple[np.ndarray, np.ndarray]:
        """phi and psi of the committed frames, degrees: [F, number of phi], [F, number of psi]."""
        phis, psis = backbone_torsions(self.topology())
        xyz = self.load()
        if len(xyz) == 0:
            return np.empty((0, len(phis))), np.empty((0, len(psis)))
        trajectory = mdtraj.Trajectory(xyz, mdtraj.Topology.from_openmm(self.topology()))
        return tuple(
            np.degrees(mdtraj.compute_dihedrals(trajectory, np.array(indices).reshape(-1, 4)))
            for indices in (phis, psis)
        )

    def summary(self) -> dict:
        return {
            "name": self.directory.name,
            "sequence": self.settings.sequence,
            "termini": self.settings.termini,
            "start": list(self.settings.start) if self.settings.start else None,
            "seed": self.settings.seed,
            "frames": self.num_frames,
            "target_frames": self.settings.num_frames,
            "frame_interval_ps": self.frame_interval_ps,
            "length_ns": self.num_frames * self.frame_interval_ps / 1000.0,
        }


def list_trajectories(data_dir: str | os.PathLike) -> list[Trajectory]:
    """Every trajectory under ``data_dir`` (the folder itself or its subfolders), by name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(
            f"{data_dir} is not a folder; give a folder written by `timewarp simulate`."
        )
    folders = [data_dir] if (data_dir / RUN_FILE).exists() else sorted(data_dir.iterdir())
    trajectories = []
    for folder in folders:
        if not (folder / RUN_FILE).exists():
            continue
        settings = RunSettings.from_json(_read_record(folder / RUN_FILE))
        frames = 0
        if (folder / PROGRESS_FILE).exists():
            frames = _committed_frames(folder)
        trajectories.append(Trajectory(folder, settings, frames))
    if not trajectories:
        raise ValueError(f"No trajectories (folders with {RUN_FILE}) under {data_dir}.")
    return trajectories


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is unreadable ({error}); the run folder was damaged.") from None


def _committed_frames(folder: Path) -> int:
    """Frames that ``progress.json`` records, checked against the DCD on disk."""
    path = folder / PROGRESS_FILE
    try:
        frames = int(_read_record(path)["frames"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is unreadable ({error}); the run folder was damaged.") from None
    trajectory = folder / TRAJECTORY_FILE
    num_atoms = app.PDBFile(str(folder / TOPOLOGY_FILE)).topology.getNumAtoms()
    on_disk = count_dcd_frames(trajectory, num_atoms) if trajectory.is_file() else 0
    if frames < 0 or on_disk < frames:
        raise ValueError(
            f"{trajectory} holds {on_disk} frames but {path} records {frames}: the trajectory "
            "was damaged outside `timewarp simulate`."
        )
    return frames


def load_topology(data_dir: str | os.PathLike) -> app.Topology:
    """The Topology shared by all trajectories under ``data_dir`` (refuses a mixture)."""
    trajectories = list_trajectories(data_dir)
    topology = trajectories[0].topology()
    atoms = [(a.residue.name, a.name) for a in topology.atoms()]
    for trajectory in trajectories[1:]:
        if [(a.residue.name, a.name) for a in trajectory.topology().atoms()] != atoms:
            raise ValueError(
                f"{trajectory.directory} holds another molecule than {trajectories[0].directory}; "
                "keep one molecule per data folder."
            )
    return topology


def split_ranges(
    num_frames: int, gap: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, range]:
    """Frame indices of each split's segment in a trajectory of ``num_frames`` frames."""
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}."
        )
    if gap < 0:
        raise ValueError(f"gap must be >= 0 frames, got {gap}.")
    # The tolerance keeps e.g. 0.9 * 70 = 63.00000000000001 (or 62.999...) at 63.
    train_end = math.floor(fractions[0] * num_frames + 1e-9)
    validation_end = math.floor((fractions[0] + fractions[1]) * num_frames + 1e-9)
    return {
        "train": range(0, train_end),
        "validation": range(min(train_end + gap, validation_end), validation_end),
        "test": range(min(validation_end + gap, num_frames), num_frames),
    }


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {SPLITS}.")


def _frames_per(interval_ps: float, frame_interval_ps: float, what: str) -> int:
    frames = interval_ps / frame_interval_ps
    if frames < 0 or not math.isclose(frames, round(frames), abs_tol=1e-9):
        raise ValueError(
            f"{what} = {interval_ps} ps is not a whole number of frames ({frame_interval_ps} ps)."
        )
    return round(frames)


def load_frames(
    data_dir: str | os.PathLike,
    split: Split,
    gap_ps: float = 0.0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> torch.Tensor:
    """The frames of one split from every trajectory, float32 [F, N, 3] in nm."""
    _check_split(split)
    load_topology(data_dir)
    chunks = []
    for trajectory in list_trajectories(data_dir):
        gap = _frames_per(gap_ps, trajectory.frame_interval_ps, "gap_ps")
        segment = split_ranges(trajectory.num_frames, gap, fractions)[split]
        chunks.append(trajectory.load()[segment.start : segment.stop])
    return torch.from_numpy(np.concatenate(chunks))


def load_pairs(
    data_dir: str | os.PathLike,
    tau_ps: float,
    split: Split,
    gap_ps: float | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (x(t), x(t + tau)) of one split, each float32 [B, N, 3] in nm.

    Every frame t of the split's segment whose partner t + tau also lies in the segment gives a
    pair. ``gap_ps`` (the gap between segments) defaults to tau.
    """
    _check_split(split)
    if tau_ps <= 0:
        raise ValueError(f"tau_ps must be positive, got {tau_ps}.")
    load_topology(data_dir)
    starts, ends = [], []
    for trajectory in list_trajectories(data_dir):
        lag = _frames_per(tau_ps, trajectory.frame_interval_ps, "tau_ps")
        gap = _frames_per(tau_ps if gap_ps is None else gap_ps, trajectory.frame_interval_ps, "gap")
        segment = split_ranges(trajectory.num_frames, gap, fractions)[split]
        if len(segment) <= lag:
            continue
        frames = trajectory.load()[segment.start : segment.stop]
        starts.append(frames[:-lag])
        ends.append(frames[lag:])
    if not starts:
        raise ValueError(
            f"No {split} pairs with tau = {tau_ps} ps in {data_dir}: its segments are shorter "
            "than tau. Use a smaller tau or more data."
        )
    return torch.from_numpy(np.concatenate(starts)), torch.from_numpy(np.concatenate(ends))
