"""The reference MD of the benchmark and what is derived from it.

MD with the data protocol, generated with :mod:`openmm_timewarp.data.md` and cached on disk (or any
``timewarp simulate`` folder). From it come the TICA model (sin/cos of the backbone dihedrals,
deeptime), the metastable states (Ramachandran basins for a dipeptide, k-means on TIC0/TIC1
otherwise, kept when their reference population is at least ``min_state_population``), the
histogram ranges and the chains' starting frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm.app as app

from openmm_timewarp.data.datasets import list_trajectories
from openmm_timewarp.data.md import RunSettings, TrajectoryRun
from openmm_timewarp.evaluation import metrics
from openmm_timewarp.evaluation.settings import (
    MD_DATA_PROTOCOL,
    MD_FRICTION_PER_PS,
    MD_PROTOCOLS,
    BenchmarkSettings,
)
from openmm_timewarp.optional import require

mdtraj = require("mdtraj")


@dataclass
class Reference:
    """The reference MD and everything derived from it."""

    trajectories: list[mdtraj.Trajectory]
    frame_interval_ps: float
    source: str
    tica: object
    states: list[int]
    state_names: list[str]
    kmeans: metrics.KMeansStates | None
    tic_range: list[list[float]]


def _atom_names(topology: app.Topology) -> list[tuple[str, str]]:
    return [(atom.residue.name, atom.name) for atom in topology.atoms()]


def generate_reference(
    sequence: str, termini: str, cache_dir: str | os.PathLike, settings: BenchmarkSettings
) -> Path:
    """Run (or resume, or reuse) the reference MD with the data protocol; returns its folder.

    The folder name holds everything that determines the run, so a cached reference is reused
    exactly when the same one is asked for.
    """
    timestep_fs = MD_PROTOCOLS[MD_DATA_PROTOCOL].timestep_fs
    interval_steps = round(settings.reference_frame_interval_ps * 1000.0 / timestep_fs)
    run_settings = RunSettings(
        sequence=sequence,
        termini=termini,
        temperature_K=settings.temperature_K,
        timestep_fs=timestep_fs,
        friction_per_ps=MD_FRICTION_PER_PS,
        frame_interval_steps=interval_steps,
        num_frames=max(
            2, round(settings.reference_ns * 1000.0 / settings.reference_frame_interval_ps)
        ),
        equilibration_ps=settings.reference_equilibration_ps,
        seed=settings.seed,
        platform=settings.platform,
    )
    folder = Path(cache_dir) / (
        f"reference-{sequence}-{termini}-{settings.temperature_K:g}K-{settings.reference_ns:g}ns-"
        f"every{settings.reference_frame_interval_ps:g}ps-eq{settings.reference_equilibration_ps:g}ps"
        f"-seed{settings.seed}-{settings.platform}"
    )
    TrajectoryRun(folder, run_settings).run(
        checkpoint_interval_frames=max(1, run_settings.num_frames // 20)
    )
    return folder


def read_reference_trajectories(
    reference_dir: str | os.PathLike, topology: app.Topology
) -> tuple[list[mdtraj.Trajectory], float]:
    """The trajectories of a ``timewarp simulate`` folder of the peptide, and their frame
    interval (ps); refused for another molecule or atom order."""
    runs = list_trajectories(reference_dir)
    md_topology = mdtraj.Topology.from_openmm(topology)
    trajectories = []
    for run in runs:
        if _atom_names(run.topology()) != _atom_names(topology):
            raise ValueError(
                f"the reference {run.directory} holds another molecule (or atom order) than the "
                "benchmarked peptide; give a reference made for this sequence and termini"
            )
        if run.num_frames:
            trajectories.append(mdtraj.Trajectory(run.load(), md_topology))
    if not trajectories:
        raise ValueError(f"the reference {reference_dir} has no frames yet")
    intervals = {run.frame_interval_ps for run in runs}
    if len(intervals) != 1:
        raise ValueError(f"the reference trajectories have different frame intervals {intervals}")
    return trajectories, intervals.pop()


def load_reference(
    reference_dir: str | os.PathLike, topology: app.Topology, settings: BenchmarkSettings
) -> Reference:
    """Read a ``timewarp simulate`` folder and derive TICA, states and histogram ranges from it."""
    trajectories, frame_interval_ps = read_reference_trajectories(reference_dir, topology)
    lag = max(1, round(settings.tica_lag_ps / frame_interval_ps))
    features = [metrics.dihedral_features(t) for t in trajectories]
    usable = [f for f in features if len(f) > lag]
    if not usable:
        raise ValueError(
            f"the reference trajectories are shorter than the TICA lag "
            f"({settings.tica_lag_ps} ps); generate a longer reference or lower tica_lag_ps"
        )
    tica = metrics.fit_tica(usable, lagtime=lag, dim=2)
    tics = np.concatenate([tica.transform(f) for f in features])
    low, high = tics.min(axis=0), tics.max(axis=0)
    margin = 0.1 * (high - low) + 1e-6
    tic_range = [[float(low[i] - margin[i]), float(high[i] + margin[i])] for i in range(2)]

    phi, _ = metrics.backbone_dihedrals(trajectories[0])
    kmeans = None
    if phi.shape[1] == 1:
        names = list(metrics.RAMACHANDRAN_STATES)
        labels = np.concatenate([ramachandran_labels(t) for t in trajectories])
    else:
        kmeans = metrics.kmeans_states(tics, settings.num_kmeans_states, seed=settings.seed)
        names = [f"cluster{i}" for i in range(settings.num_kmeans_states)]
        labels = kmeans.assign(tics)
    populations = np.bincount(labels, minlength=len(names)) / len(labels)
    states = [i for i, p in enumerate(populations) if p >= settings.min_state_population]
    return Reference(
        trajectories=trajectories,
        frame_interval_ps=frame_interval_ps,
        source=str(reference_dir),
        tica=tica,
        states=states,
        state_names=names,
        kmeans=kmeans,
        tic_range=tic_range,
    )


def reference_folder(
    sequence: str,
    termini: str,
    settings: BenchmarkSettings,
    reference_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = "data/benchmark",
) -> Path:
    """``reference_dir``, or, when None, the reference generated (and cached) under ``cache_dir``
    by :func:`generate_reference`."""
    if reference_dir is None:
        return generate_reference(sequence, termini, cache_dir, settings)
    return Path(reference_dir)


def ramachandran_labels(trajectory: mdtraj.Trajectory) -> np.ndarray:
    phi, psi = metrics.backbone_dihedrals(trajectory)
    return metrics.ramachandran_states(phi[:, 0], psi[:, 0])


def state_labels(trajectory: mdtraj.Trajectory, reference: Reference) -> np.ndarray:
    if reference.kmeans is None:
        return ramachandran_labels(trajectory)
    return reference.kmeans.assign(reference.tica.transform(metrics.dihedral_features(trajectory)))


def reference_tics(reference: Reference) -> list[np.ndarray]:
    return [reference.tica.transform(metrics.dihedral_features(t)) for t in reference.trajectories]


def starting_frames(reference: Reference, count: int) -> list[np.ndarray]:
    """``count`` reference frames spread evenly over the pooled reference (the first one first)."""
    pooled = np.concatenate([t.xyz for t in reference.trajectories])
    indices = np.linspace(0, len(pooled) - 1, count).round().astype(int)
    return [pooled[i].astype(np.float64) for i in indices]
