"""A chain's folder: its start, trajectory, statistics and checkpoint, written so that it resumes.

``<output>/<name>/`` holds ``topology.pdb`` (the start), ``system.xml`` (the System sampled),
``chain.json`` (what the chain samples: temperature, model name, file and SHA-256),
``trajectory.dcd`` (a frame every ``trajectory_interval`` steps; time in units of the model's
nominal tau), ``statistics.json`` (counters and wall time) and ``checkpoint.pt`` (state,
generator, counters, frame count; its frame count is what a reader may use, see
:mod:`openmm_timewarp.data.chain_data`). A
checkpoint flushes the trajectory to disk first and is replaced atomically, so on resume the
trajectory holds at least the frames it records; the frames after them are cut off
(:func:`~openmm_timewarp.data.dcd.truncate_dcd`), so an interrupted job loses and duplicates
nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import numpy as np
import openmm
from openmm import app, unit

from openmm_timewarp.checkpoints import load_checkpoint, save_checkpoint
from openmm_timewarp.data.dcd import count_dcd_frames, truncate_dcd
from openmm_timewarp.files import write_json_atomically

TOPOLOGY_FILE = "topology.pdb"
SYSTEM_FILE = "system.xml"
RECORD_FILE = "chain.json"
TRAJECTORY_FILE = "trajectory.dcd"
STATISTICS_FILE = "statistics.json"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1


class ChainFiles:
    """The files of one chain in ``directory``: open with :meth:`start` or :meth:`resume`, then
    :meth:`write_frame`, :meth:`save` and finally :meth:`close`."""

    def __init__(
        self, directory: Path, topology: app.Topology, tau_ps: float, trajectory_interval: int
    ) -> None:
        self.directory = directory
        self.topology = topology
        self.tau_ps = tau_ps
        self.trajectory_interval = trajectory_interval
        self._handle: IO[bytes] | None = None
        self._dcd: app.DCDFile | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    @property
    def trajectory_path(self) -> Path:
        return self.directory / TRAJECTORY_FILE

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def read_checkpoint(self) -> dict:
        """The state :meth:`save` wrote last (refused if another version wrote it)."""
        state = load_checkpoint(self.checkpoint_path)
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{self.checkpoint_path} has an unknown checkpoint version")
        return state

    def start(self, positions: np.ndarray, system: openmm.System, record: dict) -> None:
        """A new chain: write the start, its System and ``record`` (what it samples), and open
        an empty trajectory."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / TOPOLOGY_FILE, "w") as handle:
            app.PDBFile.writeFile(self.topology, positions * unit.nanometer, handle)
        (self.directory / SYSTEM_FILE).write_text(openmm.XmlSerializer.serialize(system))
        write_json_atomically(self.directory / RECORD_FILE, record)
        self._open_trajectory("w+b", append=False)

    def resume(self, frames: int) -> None:
        """Continue after a checkpoint that recorded ``frames`` frames: cut later frames off."""
        num_atoms = self.topology.getNumAtoms()
        trajectory = self.trajectory_path
        if not trajectory.exists() or count_dcd_frames(trajectory, num_atoms) < frames:
            raise ValueError(
                f"{trajectory} is missing or has fewer frames than its checkpoint "
                f"({frames}); the chain cannot be resumed: move "
                f"{self.directory} aside and start the chain again"
            )
        truncate_dcd(trajectory, num_atoms, frames, self.trajectory_interval)
        self._open_trajectory("r+b", append=True)

    def _open_trajectory(self, mode: str, append: bool) -> None:
        self._handle = open(self.trajectory_path, mode)
        self._dcd = app.DCDFile(
            self._handle,
            self.topology,
            self.tau_ps * unit.picosecond,
            firstStep=self.trajectory_interval,
            interval=self.trajectory_interval,
            append=append,
        )

    def write_frame(self, positions: np.ndarray) -> None:
        self._dcd.writeModel(positions)

    def save(self, state: dict, statistics: dict) -> None:
        """Write the checkpoint ``state`` (atomically) and the ``statistics``; flushes the
        trajectory first."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        save_checkpoint({"version": CHECKPOINT_VERSION, **state}, self.checkpoint_path)
        write_json_atomically(self.directory / STATISTICS_FILE, statistics)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
