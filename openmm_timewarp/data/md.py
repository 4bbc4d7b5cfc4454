"""Resumable molecular dynamics that produce the training data.

The protocol (docs/data.md): amber14-all + OBC2 as a native GBSAOBCForce, no constraints, no cutoff,
LangevinMiddleIntegrator at 310 K with a 0.5 fs step and 0.3/ps friction, on the Reference platform.
A run minimises, equilibrates (optionally restrained to a (phi, psi) basin, then released) and then
records one frame every ``frame_interval_steps`` steps.

One run is one folder:

- ``topology.pdb``: the topology and the first production frame;
- ``system.xml``: the production System, so that a resumed run (in any process) integrates
  the very same System rather than one rebuilt from ``topology.pdb`` (whose bond order, and so the
  order of force terms and their rounding, differs);
- ``trajectory.dcd``: the frames (mdtraj/OpenMM readable), appended in blocks;
- ``run.json``: the settings the run was started with (a resume must ask for the same ones);
- ``progress.json``: the commit record: frames written and the checkpoint that continues after them;
- ``checkpoint-<frames>.chk``: ``Simulation.saveCheckpoint`` output (positions, velocities and the
  integrator's random state), so a resumed run continues bit for bit on the same platform.

Frames reach the DCD before the checkpoint that follows them, and ``progress.json`` is replaced
atomically only after both are on disk. After an interruption, the DCD is cut back to the frames
that ``progress.json`` records and the run continues from the matching checkpoint: nothing is lost
and no frame is written twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from openmm_timewarp.data.dcd import count_dcd_frames, truncate_dcd
from openmm_timewarp.data.peptides import (
    FORCEFIELD_NAME,
    Termini,
    backbone_torsions,
    build_peptide,
    create_system,
    validate_sequence,
    with_hbond_constraints,
)
from openmm_timewarp.files import file_sha256, write_atomically, write_json_atomically
from openmm_timewarp.progress import progress_bar

#: Named (phi, psi) basins of alanine dipeptide, in degrees.
BASINS: dict[str, tuple[float, float]] = {
    "alphaR": (-70.0, -40.0),
    "beta": (-150.0, 150.0),
    "alphaL": (60.0, 40.0),
    "C7ax": (70.0, -70.0),
}

TOPOLOGY_FILE = "topology.pdb"
TRAJECTORY_FILE = "trajectory.dcd"
RUN_FILE = "run.json"
PROGRESS_FILE = "progress.json"
SYSTEM_FILE = "system.xml"


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything that determines a trajectory; a resumed run must be given the same settings."""

    sequence: str
    termini: Termini = "capped"
    start: tuple[float, float] | None = None  # (phi, psi) in degrees, or None for an extended chain
    temperature_K: float = 310.0
    timestep_fs: float = 0.5
    friction_per_ps: float = 0.3
    frame_interval_steps: int = 2000  # 1 ps at 0.5 fs
    num_frames: int = 1000
    equilibration_ps: float = 20.0
    restraint_kj_per_mol_rad2: float = 500.0
    seed: int = 1
    platform: str = "Reference"
    #: Constrain bonds to hydrogen (for a faster reference with a 2 fs step; not training data).
    hydrogen_constraints: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sequence", validate_sequence(self.sequence))
        if self.start is not None:
            object.__setattr__(self, "start", tuple(float(a) for a in self.start))
        for name in ("temperature_K", "timestep_fs", "friction_per_ps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.frame_interval_steps < 1 or self.num_frames < 1:
            raise ValueError("frame_interval_steps and num_frames must be at least 1.")
        if self.equilibration_ps < 0:
            raise ValueError(f"equilibration_ps must be >= 0, got {self.equilibration_ps}.")
        if not 0 < self.seed < 2**31:
            raise ValueError(
                f"seed must be in 1 .. 2**31 - 1 (0 means random in OpenMM), got {self.seed}."
            )

    @property
    def frame_interval_ps(self) -> float:
        return self.frame_interval_steps * self.timestep_fs / 1000.0

    def to_json(self) -> dict:
        record = dataclasses.asdict(self)
        record["start"] = list(self.start) if self.start is not None else None
        record["forcefield"] = FORCEFIELD_NAME
        return record

    @classmethod
    def from_json(cls, record: dict) -> RunSettings:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in fields}
        if values.get("start") is not None:
            values["start"] = tuple(values["start"])
        return cls(**values)


class CheckpointError(RuntimeError):
    """A run folder cannot be resumed as it is; the message says why and what to do."""


def parse_start(text: str) -> tuple[float, float]:
    """A basin name (``alphaR``, ``beta``, ``alphaL``, ``C7ax``) or ``PHI,PSI`` in degrees."""
    if text in BASINS:
        return BASINS[text]
    try:
        phi, psi = (float(part) for part in text.split(","))
        if not (math.isfinite(phi) and math.isfinite(psi)):
            raise ValueError("not finite")
    except ValueError:
        raise ValueError(
            f"Cannot read start {text!r}: give a basin name ({', '.join(BASINS)}) "
            "or PHI,PSI in degrees (finite numbers)."
        ) from None
    return phi, psi


def _platform(name: str) -> openmm.Platform:
    try:
        return openmm.Platform.getPlatformByName(name)
    except openmm.OpenMMException:
        available = [
            openmm.Platform.getPlatform(i).getName()
            for i in range(openmm.Platform.getNumPlatforms())
        ]
        raise ValueError(f"Unknown OpenMM platform {name!r}; available: {available}.") from None


def _system(settings: RunSettings, topology: app.Topology) -> openmm.System:
    system = create_system(topology)
    return with_hbond_constraints(system, topology) if settings.hydrogen_constraints else system


def _integrator(settings: RunSettings) -> openmm.LangevinMiddleIntegrator:
    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature_K * unit.kelvin,
        settings.friction_per_ps / unit.picosecond,
        settings.timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(settings.seed)
    return integrator


def _add_backbone_restraint(
    system: openmm.System, topology: app.Topology, start: tuple[float, float], k: float
) -> None:
    """Harmonic restraint of every phi and psi to the start angles (periodic angle difference)."""
    restraint = openmm.CustomTorsionForce(
        "0.5*k*d^2; d=min(abs(theta-theta0), 2*pi-abs(theta-theta0))"
    )
    restraint.addGlobalParameter("k", k)
    restraint.addGlobalParameter("pi", math.pi)
    restraint.addPerTorsionParameter("theta0")
    phis, psis = backbone_torsions(topology)
    for atoms, angle in [(a, start[0]) for a in phis] + [(a, start[1]) for a in psis]:
        restraint.addTorsion(*atoms, [math.radians(angle)])
    system.addForce(restraint)


def prepare_run(settings: RunSettings) -> tuple[app.Simulation, app.Topology]:
    """Build, minimise and equilibrate; return the production Simulation at its first frame."""
    phi, psi = settings.start if settings.start is not None else (None, None)
    modeller = build_peptide(settings.sequence, settings.termini, phi=phi, psi=psi)
    topology = modeller.topology
    platform = _platform(settings.platform)

    # Equilibrate in a copy of the System that holds the basin restraint (if any), then release it
    # by moving the state into the production System, which never contained the restraint.
    equilibration_system = _system(settings, topology)
    if settings.start is not None:
        _add_backbone_restraint(
            equilibration_system, topology, settings.start, settings.restraint_kj_per_mol_rad2
        )
    equilibration = app.Simulation(topology, equilibration_system, _integrator(settings), platform)
    equilibration.context.setPositions(modeller.positions)
    equilibration.minimizeEnergy()
    equilibration.context.setVelocitiesToTemperature(
        settings.temperature_K * unit.kelvin, settings.seed
    )
    equilibration.step(round(settings.equilibration_ps * 1000.0 / settings.timestep_fs))
    state = equilibration.context.getState(getPositions=True, getVelocities=True)

    production = app.Simulation(
        topology, _system(settings, topology), _integrator(settings), platform
    )
    production.context.setPositions(state.getPositions())
    production.context.setVelocities(state.getVelocities())
    return production, topology


class TrajectoryRun:
    """One resumable trajectory in its own folder (see the module documentation for the layout)."""

    def __init__(self, directory: str | os.PathLike, settings: RunSettings):
        self.directory = Path(directory)
        self.settings = settings

    @property
    def progress_path(self) -> Path:
        return self.directory / PROGRESS_FILE

    def frames_done(self) -> int:
        """Frames committed so far (0 before the run has started)."""
        if not self.progress_path.exists():
            return 0
        return self._read_progress()["frames"]

    def _read_progress(self) -> dict:
        try:
            progress = json.loads(self.progress_path.read_text())
            return {"frames": int(progress["frames"]), "checkpoint": str(progress["checkpoint"]),
                    "sha256": str(progress["sha256"])}  # fmt: skip
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"{self.progress_path} is unreadable ({error}). The frames in {TRAJECTORY_FILE} "
                "are untouched; move the run folder aside and start the run again."
            ) from None

    def _check_writable(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise ValueError(
                f"Cannot write to the output folder {self.directory}: {error.strerror}. "
                "Choose a folder you can write to (--output)."
            ) from None

    def _check_settings(self) -> None:
        run_path = self.directory / RUN_FILE
        if not run_path.exists():
            return
        try:
            recorded = RunSettings.from_json(json.loads(run_path.read_text()))
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{run_path} is unreadable ({error}).") from None
        # The length may grow on resume; everything else must match.
        if dataclasses.replace(recorded, num_frames=self.settings.num_frames) != self.settings:
            raise ValueError(
                f"{self.directory} holds a run with other settings ({recorded}); resume it with "
                "those settings or write the new run to another folder."
            )

    def _start(self) -> app.Simulation:
        simulation, topology = prepare_run(self.settings)
        positions = simulation.context.getState(getPositions=True).getPositions()
        with open(self.directory / TOPOLOGY_FILE, "w") as handle:
            app.PDBFile.writeFile(topology, positions, handle, keepIds=True)
        (self.directory / SYSTEM_FILE).write_text(openmm.XmlSerializer.serialize(simulation.system))
        with open(self.directory / TRAJECTORY_FILE, "wb") as handle:
            app.DCDFile(
                handle, topology, self.settings.timestep_fs * unit.femtosecond,
                firstStep=self.settings.frame_interval_steps,
                interval=self.settings.frame_interval_steps,
            )  # fmt: skip
        write_json_atomically(self.directory / RUN_FILE, self.settings.to_json())
        self._commit(simulation, 0)
        return simulation

    def _resume(self) -> tuple[app.Simulation, int]:
        progress = self._read_progress()
        required = (TOPOLOGY_FILE, TRAJECTORY_FILE)
        missing = [name for name in required if not (self.directory / name).exists()]
        if missing:
            raise CheckpointError(
                f"{self.directory} lacks {', '.join(missing)}, so it cannot be resumed; move the "
                "run folder aside and start the run again."
            )
        checkpoint = self.directory / progress["checkpoint"]
        if not checkpoint.exists() or file_sha256(checkpoint) != progress["sha256"]:
            raise CheckpointError(
                f"Checkpoint {checkpoint} is missing or corrupt (its checksum does not match "
                f"{PROGRESS_FILE}). The {progress['frames']} frames in {TRAJECTORY_FILE} are "
                "untouched and usable; to extend the run, start a new one in another folder."
            )
        pdb = app.PDBFile(str(self.directory / TOPOLOGY_FILE))
        simulation = app.Simulation(
            pdb.topology,
            self._saved_system(pdb.topology),
            _integrator(self.settings),
            _platform(self.settings.platform),
        )
        try:
            simulation.loadCheckpoint(str(checkpoint))
        except openmm.OpenMMException as error:
            raise CheckpointError(f"Cannot load checkpoint {checkpoint}: {error}") from None

        trajectory = self.directory / TRAJECTORY_FILE
        num_atoms = pdb.topology.getNumAtoms()
        on_disk = count_dcd_frames(trajectory, num_atoms)
        if on_disk < progress["frames"]:
            raise CheckpointError(
                f"{trajectory} holds {on_disk} frames but {PROGRESS_FILE} records "
                f"{progress['frames']}: "
                "the trajectory was cut short outside this program. Move the run folder aside."
            )
        # Frames written after the last commit are recomputed identically from the checkpoint.
        truncate_dcd(trajectory, num_atoms, progress["frames"], self.settings.frame_interval_steps)
        return simulation, progress["frames"]

    def _saved_system(self, topology: app.Topology) -> openmm.System:
        """The System the run started with; rebuilt from the topology for folders written
        before it was kept (such a resume continues the run, but not bit for bit)."""
        path = self.directory / SYSTEM_FILE
        if not path.exists():
            return _system(self.settings, topology)
        try:
            system = openmm.XmlSerializer.deserialize(path.read_text())
        except Exception as error:  # OpenMM raises its own exception types for bad XML
            raise CheckpointError(
                f"{path} is unreadable ({error}); move the run folder aside and start again."
            ) from None
        if system.getNumParticles() != topology.getNumAtoms():
            raise CheckpointError(
                f"{path} has {system.getNumParticles()} particles but {TOPOLOGY_FILE} has "
                f"{topology.getNumAtoms()} atoms; move the run folder aside and start again."
            )
        return system

    def _commit(self, simulation: app.Simulation, frames: int) -> None:
        """Save a checkpoint after ``frames`` frames and make it the one to resume from."""
        name = f"checkpoint-{frames:09d}.chk"
        checkpoint = self.directory / name
        write_atomically(checkpoint, simulation.context.createCheckpoint())
        write_json_atomically(
            self.progress_path,
            {"frames": frames, "checkpoint": name, "sha256": file_sha256(checkpoint)},
        )
        for old in self.directory.glob("checkpoint-*.chk"):
            if old.name != name:
                old.unlink()

    def run(
        self,
        checkpoint_interval_frames: int = 100,
        stop_at_frames: int | None = None,
        progress_position: int = 0,
        show_progress: bool = True,
    ) -> int:
        """Run (or resume) until ``settings.num_frames`` frames exist; return the frames on disk.

        Args:
            checkpoint_interval_frames: frames between commits (DCD append + checkpoint).
            stop_at_frames: stop once this many frames exist (at a commit), e.g. to split a job.
            progress_position: tqdm line, for several runs in one terminal.
            show_progress: draw a progress bar on stderr.
        """
        if checkpoint_interval_frames < 1:
            raise ValueError("checkpoint_interval_frames must be at least 1.")
        self._check_writable()
        self._check_settings()
        if self.progress_path.exists():
            simulation, done = self._resume()
        else:
            simulation, done = self._start(), 0
        target = self.settings.num_frames
        if stop_at_frames is not None:
            target = min(target, stop_at_frames)
        if done >= target:
            return done

        interval = self.settings.frame_interval_steps
        topology = simulation.topology
        frame_ns = self.settings.frame_interval_ps / 1000.0
        bar = progress_bar(
            total=self.settings.num_frames,
            initial=done,
            desc=self.directory.name,
            unit="ps" if self.settings.frame_interval_ps == 1.0 else "frame",
            position=progress_position,
            enabled=show_progress,
            mininterval=1.0,  # on a terminal; a log gets a line a minute
            dynamic_ncols=True,
        )
        started, started_frames = time.perf_counter(), done
        with open(self.directory / TRAJECTORY_FILE, "rb+") as handle:
            dcd = app.DCDFile(
                handle, topology, self.settings.timestep_fs * unit.femtosecond,
                firstStep=interval, interval=interval, append=True,
            )  # fmt: skip
            while done < target:
                block = min(checkpoint_interval_frames, target - done)
                frames = np.empty((block, topology.getNumAtoms(), 3))
                for i in range(block):
                    simulation.step(interval)
                    state = simulation.context.getState(getPositions=True)
                    frames[i] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                    bar.update(1)
                for positions in frames:
                    dcd.writeModel(positions)
                os.fsync(handle.fileno())
                done += block
                self._commit(simulation, done)
                elapsed = time.perf_counter() - started
                bar.set_postfix(
                    ns_per_day=f"{(done - started_frames) * frame_ns * 86400 / elapsed:.0f}"
                )
        bar.close()
        return done


def _run_one(arguments: tuple[str, RunSettings, int, int | None, int, bool]) -> tuple[str, int]:
    directory, settings, checkpoint_interval_frames, stop_at, position, show_progress = arguments
    frames = TrajectoryRun(directory, settings).run(
        checkpoint_interval_frames,
        stop_at_frames=stop_at,
        progress_position=position,
        show_progress=show_progress,
    )
    return directory, frames


def run_many(
    runs: Sequence[tuple[str | os.PathLike, RunSettings]],
    processes: int = 1,
    checkpoint_interval_frames: int = 100,
    round_frames: int | None = None,
    show_progress: bool = True,
) -> list[tuple[str, int]]:
    """Run several trajectories, ``processes`` at a time, each in its own process.

    With ``round_frames``, the runs advance together: round k brings every run to k x
    ``round_frames`` frames before any goes further, so that data read while the job is still
    going covers every start, whatever the number of processes.
    """
    if processes < 1:
        raise ValueError("processes must be at least 1.")
    if round_frames is not None and round_frames < 1:
        raise ValueError("round_frames must be at least 1.")
    longest = max(settings.num_frames for _, settings in runs)
    stops = (
        [longest]
        if round_frames is None
        else [*range(round_frames, longest, round_frames), longest]
    )
    pool = ProcessPoolExecutor(max_workers=processes) if processes > 1 else None
    run_jobs = pool.map if pool is not None else map
    results: list[tuple[str, int]] = []
    try:
        for stop in stops:
            jobs = [
                (str(directory), settings, checkpoint_interval_frames, stop, i, show_progress)
                for i, (directory, settings) in enumerate(runs)
            ]
            results = list(run_jobs(_run_one, jobs))
    finally:
        if pool is not None:
            pool.shutdown()
    return results
