"""Timewarp against molecular dynamics, side by side, for the same wall-clock budget.

One process, one platform, one peptide; each sampler runs for the same wall-clock budget, split
evenly over its starts:

- ``timewarp``: TimewarpIntegrator, Metropolis-Hastings (exact);
- ``timewarp-exploration``: TimewarpIntegrator in exploration mode (energy threshold, not exact);
- ``md-0.5fs``: LangevinMiddleIntegrator 0.5 fs, no constraints (the training-data protocol);
- ``md-2fs-hbonds``: LangevinMiddleIntegrator 2 fs with bonds to hydrogen constrained (what a user
  would run);
- ``md-4fs-hmr``: LangevinMiddleIntegrator 4 fs, bonds to hydrogen constrained and hydrogen mass
  repartitioning to 4 amu (what a user after speed would run; 4 amu with 4 fs is the OpenMM user
  guide's pairing).

Everything inside the loop counts towards the budget: model calls, energies, force evaluations,
reading positions back and Python overhead. Context creation (and the model load it implies) is
reported separately as ``setup_s``. Frames are recorded every ``timewarp_frame_interval`` MH
iterations and every ``md_frame_interval_ps`` of MD; a Timewarp frame reads positions back only
when a proposal was accepted since the last frame (otherwise the state is unchanged). When a chain
reaches ``max_frames`` frames, every second frame is dropped and the stride doubles, so memory stays
bounded and the spacing stays uniform.

The comparison is against a reference: MD with the data protocol, generated with
:mod:`openmm_timewarp.data.md`
and cached on disk (or any ``timewarp simulate`` folder). From it come the
TICA model (sin/cos of the backbone dihedrals, deeptime), the metastable states (Ramachandran basins
for a dipeptide, k-means on TIC0/TIC1 otherwise, kept when their reference population is at least
``min_state_population``) and the reference histograms. Reported per sampler: acceptance; ESS and
ESS per second of TIC0 and of every backbone dihedral (sin/cos, see
:mod:`openmm_timewarp.evaluation.metrics`)
with errors; time to discover each state; Jensen-Shannon divergences of the Ramachandran and TIC
histograms against the reference; the phi > 0 population. For every coordinate the report names
the fastest MD baseline (highest ESS per second) and Timewarp's ratio against it. The outputs are
``report.json``, ``summary.md`` and PNG plots in the output folder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform as host
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
from tqdm import tqdm

from openmm_timewarp.data.datasets import list_trajectories
from openmm_timewarp.data.md import RunSettings, TrajectoryRun
from openmm_timewarp.data.peptides import (
    FORCEFIELD_NAME,
    TERMINI,
    build_peptide,
    create_system,
    read_system,
    with_hbond_constraints,
    with_hydrogen_mass,
)
from openmm_timewarp.evaluation import metrics
from openmm_timewarp.optional import require
from openmm_timewarp.progress import progress_bar
from openmm_timewarp.sampling.diagnostics import is_stuck, stuck_message

mdtraj = require("mdtraj")

TIMEWARP = "timewarp"
EXPLORATION = "timewarp-exploration"
MD_DATA_PROTOCOL = "md-0.5fs"
MD_PRACTICAL = "md-2fs-hbonds"
MD_HMR = "md-4fs-hmr"
SAMPLERS = (TIMEWARP, EXPLORATION, MD_DATA_PROTOCOL, MD_PRACTICAL, MD_HMR)
MD_FRICTION_PER_PS = 0.3
#: The usual repartitioned hydrogen mass for a 4 fs step (OpenMM user guide, ``hydrogenMass``).
HMR_HYDROGEN_MASS_AMU = 4.0


@dataclass(frozen=True)
class MDProtocol:
    """One MD baseline: LangevinMiddleIntegrator at ``MD_FRICTION_PER_PS`` and the benchmark's
    temperature."""

    timestep_fs: float
    hbond_constraints: bool
    #: Repartitioned hydrogen mass (amu); None keeps the force field's masses.
    hydrogen_mass_amu: float | None = None


MD_PROTOCOLS = {
    MD_DATA_PROTOCOL: MDProtocol(0.5, hbond_constraints=False),
    MD_PRACTICAL: MDProtocol(2.0, hbond_constraints=True),
    MD_HMR: MDProtocol(4.0, hbond_constraints=True, hydrogen_mass_amu=HMR_HYDROGEN_MASS_AMU),
}
RAMACHANDRAN_BINS = 36
TIC_BINS = 30


@dataclass
class BenchmarkSettings:
    """What the benchmark runs and how it analyses; the defaults are the documented protocol."""

    budget_s: float = 60.0
    samplers: tuple[str, ...] = SAMPLERS
    temperature_K: float = 310.0
    platform: str = "Reference"
    num_starts: int = 1
    timewarp_frame_interval: int = 10
    md_frame_interval_ps: float = 0.1
    max_frames: int = 100_000
    #: None: the integrator's default (a large batch for independence models, else adaptive).
    max_proposal_batch: int | None = None
    exploration_threshold_kj_mol: float = 300.0
    reference_ns: float = 10.0
    reference_frame_interval_ps: float = 1.0
    reference_equilibration_ps: float = 20.0
    tica_lag_ps: float = 10.0
    min_state_population: float = 0.001
    num_kmeans_states: int = 6
    seed: int = 1
    #: Threads of torch's (and so the plugin's libtorch's) intra-op pool. One, like the single-
    #: threaded Reference platform, keeps the comparison on equal hardware; more threads than free
    #: cores make model calls many times slower on a busy machine.
    torch_threads: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.samplers) - set(SAMPLERS)
        if unknown or not self.samplers:
            raise ValueError(f"unknown samplers {sorted(unknown)}; choose from {SAMPLERS}")
        positive = ("budget_s", "md_frame_interval_ps", "reference_ns", "tica_lag_ps")
        for name in positive + (
            "reference_frame_interval_ps",
            "temperature_K",
            "exploration_threshold_kj_mol",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        integers = ("num_starts", "timewarp_frame_interval", "max_proposal_batch", "seed")
        for name in integers + ("torch_threads",):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_frames < 4:
            raise ValueError(f"max_frames must be at least 4, got {self.max_frames}")


@dataclass
class Chain:
    """One sampler run from one start: frames and the wall time at which each was recorded."""

    positions: np.ndarray  # [frames, atoms, 3], nm
    times_s: np.ndarray  # wall seconds since the chain started
    wall_s: float
    setup_s: float
    steps: int
    stride: int  # steps per frame at the end (after any doubling)
    counters: dict = field(default_factory=dict)


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


# ----------------------------------------------------------------------------- systems and samplers


def _make_integrator(
    name: str,
    model: str | os.PathLike | None,
    topology: app.Topology,
    settings: BenchmarkSettings,
    seed: int,
) -> openmm.Integrator:
    temperature = settings.temperature_K * unit.kelvin
    if name in MD_PROTOCOLS:
        timestep_fs = MD_PROTOCOLS[name].timestep_fs
        integrator = openmm.LangevinMiddleIntegrator(
            temperature, MD_FRICTION_PER_PS / unit.picosecond, timestep_fs * unit.femtosecond
        )
        integrator.setRandomNumberSeed(seed)
        return integrator
    from openmm_timewarp.integrator import TimewarpIntegrator

    return TimewarpIntegrator(
        model,
        temperature,
        topology=topology,
        max_proposal_batch=settings.max_proposal_batch,
        exploration=name == EXPLORATION,
        exploration_threshold=settings.exploration_threshold_kj_mol,
        seed=seed,
        model_threads=settings.torch_threads,
    )


def md_system(name: str, system: openmm.System, topology: app.Topology) -> openmm.System:
    """The System the MD baseline ``name`` runs: ``system`` with its constraints and masses."""
    protocol = MD_PROTOCOLS[name]
    if protocol.hbond_constraints:
        system = with_hbond_constraints(system, topology)
    if protocol.hydrogen_mass_amu is not None:
        system = with_hydrogen_mass(system, topology, protocol.hydrogen_mass_amu)
    return system


def _timewarp_counters(integrator: openmm.Integrator) -> dict:
    return {
        "steps": int(integrator.getNumSteps()),
        "proposals": int(integrator.getNumProposed()),
        "accepted": int(integrator.getNumAccepted()),
        "rejected_non_finite": int(integrator.getNumRejectedNonFinite()),
        "rejected_chirality": int(integrator.getNumRejectedChirality()),
        "model_calls": int(integrator.getNumModelCalls()),
        "model_s": float(integrator.getModelSeconds()),
        "energy_s": float(integrator.getEnergySeconds()),
        "acceptance": float(integrator.getAcceptanceRate()),
    }


def run_chain(
    name: str,
    model: str | os.PathLike | None,
    system: openmm.System,
    topology: app.Topology,
    start: np.ndarray,
    budget_s: float,
    settings: BenchmarkSettings,
    seed: int,
    progress: tqdm | None = None,
) -> Chain:
    """Run one sampler from ``start`` (nm) for ``budget_s`` wall seconds and record its frames."""
    setup_begin = time.perf_counter()
    is_md = name in MD_PROTOCOLS
    if is_md:
        system = md_system(name, system, topology)
    integrator = _make_integrator(name, model, topology, settings, seed)
    context = openmm.Context(
        system, integrator, openmm.Platform.getPlatformByName(settings.platform)
    )
    context.setPositions(start * unit.nanometer)
    if is_md:
        context.applyConstraints(1e-6)
        context.setVelocitiesToTemperature(settings.temperature_K * unit.kelvin, seed)
        timestep_fs = MD_PROTOCOLS[name].timestep_fs
        stride = max(1, round(settings.md_frame_interval_ps * 1000.0 / timestep_fs))
    else:
        stride = settings.timewarp_frame_interval
    setup_s = time.perf_counter() - setup_begin

    frames: list[np.ndarray] = []
    times: list[float] = []
    steps = 0
    accepted_at_last_frame = -1
    positions = start
    reported = 0.0
    begin = time.perf_counter()
    while True:
        integrator.step(stride)
        steps += stride
        if is_md or integrator.getNumAccepted() != accepted_at_last_frame:
            state = context.getState(getPositions=True)
            positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            if not is_md:
                accepted_at_last_frame = integrator.getNumAccepted()
        elapsed = time.perf_counter() - begin
        frames.append(positions)
        times.append(elapsed)
        if len(frames) >= settings.max_frames:
            frames, times, stride = frames[1::2], times[1::2], 2 * stride
        if progress is not None and elapsed - reported > 0.5:
            progress.update(min(elapsed, budget_s) - reported)
            reported = min(elapsed, budget_s)
        if elapsed >= budget_s and len(frames) >= 2:  # the analysis needs two frames per chain
            break
    wall_s = time.perf_counter() - begin
    if progress is not None:
        progress.update(budget_s - reported)
    counters = {} if is_md else _timewarp_counters(integrator)
    if is_md:
        counters["simulated_ps"] = steps * MD_PROTOCOLS[name].timestep_fs / 1000.0
    return Chain(
        positions=np.asarray(frames, dtype=np.float32),
        times_s=np.asarray(times),
        wall_s=wall_s,
        setup_s=setup_s,
        steps=steps,
        stride=stride,
        counters=counters,
    )


# ------------------------------------------------------------------------------------- reference


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


def load_reference(
    reference_dir: str | os.PathLike, topology: app.Topology, settings: BenchmarkSettings
) -> Reference:
    """Read a ``timewarp simulate`` folder and derive TICA, states and histogram ranges from it."""
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
    frame_interval_ps = intervals.pop()
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
        labels = np.concatenate([_ramachandran_labels(t) for t in trajectories])
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


def _ramachandran_labels(trajectory: mdtraj.Trajectory) -> np.ndarray:
    phi, psi = metrics.backbone_dihedrals(trajectory)
    return metrics.ramachandran_states(phi[:, 0], psi[:, 0])


def _state_labels(trajectory: mdtraj.Trajectory, reference: Reference) -> np.ndarray:
    if reference.kmeans is None:
        return _ramachandran_labels(trajectory)
    return reference.kmeans.assign(reference.tica.transform(metrics.dihedral_features(trajectory)))


# -------------------------------------------------------------------------------------- analysis


def _ramachandran_histogram(trajectories: Sequence[mdtraj.Trajectory]) -> np.ndarray:
    angles = [metrics.backbone_dihedrals(t) for t in trajectories]
    phi = np.concatenate([a[0].ravel() for a in angles])
    psi = np.concatenate([a[1].ravel() for a in angles])
    return metrics.histogram_2d(
        phi, psi, RAMACHANDRAN_BINS, [[-math.pi, math.pi], [-math.pi, math.pi]]
    )


def _tic_histogram(tics: Sequence[np.ndarray], reference: Reference) -> np.ndarray:
    data = np.concatenate(tics)
    low = [r[0] for r in reference.tic_range]
    high = [r[1] for r in reference.tic_range]
    clipped = np.clip(data[:, :2], low, high)  # keep the normalisation: nothing falls outside
    return metrics.histogram_2d(clipped[:, 0], clipped[:, 1], TIC_BINS, reference.tic_range)


def _ess_record(estimate: metrics.AutocorrelationEstimate, wall_s: float) -> dict:
    record = estimate.as_dict()
    record["ess_per_s"] = estimate.ess / wall_s
    record["ess_per_s_error"] = estimate.ess_error / wall_s
    return record


def _population_record(indicators: Sequence[np.ndarray]) -> dict:
    values = np.concatenate(indicators).astype(float)
    population = float(values.mean())
    estimate = metrics.integrated_autocorrelation_time([i.astype(float) for i in indicators])
    return {
        "population": population,
        "error": math.sqrt(population * (1 - population) / estimate.ess),
        "ess": estimate.ess,
    }


def analyse_chains(
    chains: Sequence[Chain], topology: app.Topology, reference: Reference
) -> tuple[dict, dict]:
    """Metrics of one sampler's chains; also returns the arrays the plots need."""
    md_topology = mdtraj.Topology.from_openmm(topology)
    trajectories = [mdtraj.Trajectory(chain.positions, md_topology) for chain in chains]
    wall_s = sum(chain.wall_s for chain in chains)
    angles = [metrics.backbone_dihedrals(t) for t in trajectories]
    tics = [reference.tica.transform(metrics.dihedral_features(t)) for t in trajectories]

    ess = {
        "tic0": _ess_record(
            metrics.integrated_autocorrelation_time([t[:, 0] for t in tics]), wall_s
        )
    }
    for kind, column in (("phi", 0), ("psi", 1)):
        for residue in range(angles[0][column].shape[1]):
            estimate = metrics.dihedral_autocorrelation([a[column][:, residue] for a in angles])
            ess[f"{kind}{residue}"] = _ess_record(estimate, wall_s)
    dihedral_keys = [k for k in ess if k != "tic0"]
    slowest = min(dihedral_keys, key=lambda k: ess[k]["ess"])

    discovery = []
    labels = [_state_labels(trajectory, reference) for trajectory in trajectories]
    for chain, chain_labels in zip(chains, labels, strict=True):
        first = metrics.discovery_times(chain_labels, chain.times_s, reference.states)
        discovery.append(
            {
                "first_visit_s": {reference.state_names[s]: t for s, t in first.items()},
                "all_states_s": metrics.time_to_discover_all(first),
            }
        )
    found = [d["all_states_s"] for d in discovery]

    left_handed = [(a[0] > 0) & (a[0] < np.radians(120.0)) for a in angles]
    result = {
        "chains": len(chains),
        "wall_s": wall_s,
        "setup_s": sum(chain.setup_s for chain in chains),
        "frames": int(sum(len(chain.positions) for chain in chains)),
        "steps": int(sum(chain.steps for chain in chains)),
        "final_stride_steps": [chain.stride for chain in chains],
        "per_chain": [dict(chain.counters, wall_s=chain.wall_s) for chain in chains],
        "ess": ess,
        "slowest_dihedral": slowest,
        "discovery": discovery,
        "median_time_to_all_states_s": (
            float(np.median(found)) if all(t is not None for t in found) else None
        ),
        "states_visited": [
            reference.state_names[s]
            for s in reference.states
            if any(np.any(chain == s) for chain in labels)
        ],
        "state_populations": _state_populations(labels, reference.state_names),
        "phi_positive": _population_record([(a[0] > 0).any(axis=1) for a in angles]),
        "left_handed": _population_record([lh.any(axis=1) for lh in left_handed]),
        "jsd_ramachandran": metrics.jensen_shannon_divergence(
            _ramachandran_histogram(trajectories), _ramachandran_histogram(reference.trajectories)
        ),
        "jsd_tic": metrics.jensen_shannon_divergence(
            _tic_histogram(tics, reference), _tic_histogram(_reference_tics(reference), reference)
        ),
    }
    if chains[0].counters.get("proposals") is not None:
        accepted = sum(chain.counters["accepted"] for chain in chains)
        proposals = sum(chain.counters["proposals"] for chain in chains)
        result["acceptance"] = accepted / proposals if proposals else 0.0
        result["acceptance_per_chain"] = [chain.counters["acceptance"] for chain in chains]
        result["stuck_chains"] = [
            stuck_message(
                f"start {index}", chain.counters["proposals"], chain.counters["rejected_non_finite"]
            )
            for index, chain in enumerate(chains)
            if is_stuck(chain.counters["proposals"], chain.counters["accepted"])
        ]
    arrays = {
        "angles": angles,
        "tics": tics,
        "times": [c.times_s for c in chains],
        "wall_s": wall_s,
    }
    return result, arrays


def _reference_tics(reference: Reference) -> list[np.ndarray]:
    return [reference.tica.transform(metrics.dihedral_features(t)) for t in reference.trajectories]


def _ratio(numerator: dict, denominator: dict) -> dict:
    """ESS/s ratio with the relative errors added in quadrature."""
    a, b = numerator["ess_per_s"], denominator["ess_per_s"]
    ratio = a / b
    relative = math.hypot(numerator["ess_per_s_error"] / a, denominator["ess_per_s_error"] / b)
    return {"ratio": ratio, "error": ratio * relative}


def profile_timewarp(sampler: dict) -> dict:
    """Where a Timewarp sampler's wall time went, from the integrators' own clocks.

    The integrator times every model call (including the copy of its output back to the host) and
    every energy evaluation; the rest of the wall time is MH bookkeeping, positions read back for
    frames and the Python loop.
    """
    chains = sampler["per_chain"]
    calls = sum(c["model_calls"] for c in chains)
    proposals = sum(c["proposals"] for c in chains)
    model_s = sum(c["model_s"] for c in chains)
    energy_s = sum(c["energy_s"] for c in chains)
    return {
        "model_s": model_s,
        "energy_s": energy_s,
        "other_s": sampler["wall_s"] - model_s - energy_s,
        "wall_s": sampler["wall_s"],
        "model_call_s": model_s / calls if calls else 0.0,
        "mean_batch": proposals / calls if calls else 0.0,
        "energy_per_proposal_s": energy_s / proposals if proposals else 0.0,
    }


# ------------------------------------------------------------------------------------- the runner


def run_benchmark(
    sequence: str,
    model: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    settings: BenchmarkSettings | None = None,
    termini: str = "capped",
    reference_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = "data/benchmark",
    show_progress: bool = True,
    parallel_tempering_dir: str | os.PathLike | None = None,
    system_file: str | os.PathLike | None = None,
) -> dict:
    """Run every sampler on the peptide for the same wall-clock budget and write the report.

    Args:
        sequence, termini: the peptide (built and parameterised by
            :mod:`openmm_timewarp.data.peptides`).
        model: proposal-model path or bundled name; needed when a Timewarp sampler is run.
        output_dir: receives ``report.json``, ``summary.md`` and the PNG plots.
        settings: the protocol; :class:`BenchmarkSettings` defaults when None.
        reference_dir: a ``timewarp simulate`` folder to compare against; when None, the reference
            MD is generated (data protocol, ``settings.reference_ns``) under ``cache_dir`` once and
            reused afterwards.
        parallel_tempering_dir: for a dipeptide, the output of
            :mod:`openmm_timewarp.evaluation.reference`;
            its 310 K state is then a second, equilibrium reference for the Ramachandran
            histogram, the basin populations and the phi > 0 population.
        system_file: a serialized System of the built peptide (same atoms, same order) that every
            sampler runs on instead of amber14-all + OBC2. The reference MD (TICA, states,
            histograms) stays that of ``reference_dir`` or the generated amber14 run, so the
            free-energy comparisons hold only for a System of that force field.

    Returns:
        The report (also written as ``report.json``).
    """
    settings = settings or BenchmarkSettings()
    if termini not in TERMINI:
        raise ValueError(f"unknown termini {termini!r}; use one of {TERMINI}")
    if model is None and ({TIMEWARP, EXPLORATION} & set(settings.samplers)):
        raise ValueError("a Timewarp sampler needs a model (a path or a bundled name)")
    import torch

    torch.set_num_threads(settings.torch_threads)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tempering = None
    if parallel_tempering_dir is not None:
        from openmm_timewarp.evaluation.reference import read_run

        tempering = read_run(parallel_tempering_dir)
    modeller = build_peptide(sequence, termini)
    topology = modeller.topology
    if system_file is None:
        system = create_system(topology)
    else:
        system = read_system(system_file, topology)

    if reference_dir is None:
        reference_dir = generate_reference(sequence, termini, cache_dir, settings)
    reference = load_reference(reference_dir, topology, settings)
    starts = _starts(reference, settings.num_starts)

    samplers: dict[str, dict] = {}
    plot_data: dict[str, dict] = {}
    budget_per_chain = settings.budget_s / len(starts)
    for index, name in enumerate(settings.samplers):
        with progress_bar(
            total=settings.budget_s,
            desc=name,
            unit="s",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s",
            enabled=show_progress,
        ) as progress:
            chains = [
                run_chain(
                    name,
                    model,
                    system,
                    topology,
                    start,
                    budget_per_chain,
                    settings,
                    seed=settings.seed + 1000 * index + k,
                    progress=progress,
                )
                for k, start in enumerate(starts)
            ]
        samplers[name], plot_data[name] = analyse_chains(chains, topology, reference)
        if name in (TIMEWARP, EXPLORATION):
            samplers[name]["profile"] = profile_timewarp(samplers[name])

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "host": host.node(),
            "processor": _processor_name(),
            "cpu_count": os.cpu_count(),
            "openmm": openmm.__version__,
            "platform": settings.platform,
        },
        "peptide": {
            "sequence": sequence,
            "termini": termini,
            "atoms": topology.getNumAtoms(),
            "system": FORCEFIELD_NAME if system_file is None else str(system_file),
        },
        "model": _model_summary(model),
        "settings": asdict(settings),
        "reference": _reference_summary(reference),
        "samplers": samplers,
        "ratios": _ratios(samplers),
        "fastest_md": fastest_md_baselines(samplers),
        "discovery_speedups": _discovery_speedups(samplers, settings),
    }
    if tempering is not None:
        report["parallel_tempering"] = _compare_with_tempering(
            tempering, str(parallel_tempering_dir), samplers, plot_data
        )
    report["files"] = _plot(report, plot_data, reference, output_dir)
    text = json.dumps(report, indent=2) + "\n"
    (output_dir / "report.json").write_text(text)
    report = json.loads(text)  # what the file holds: plain JSON types
    (output_dir / "summary.md").write_text(markdown_summary(report))
    return report


def _processor_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host.processor() or host.machine()


def _starts(reference: Reference, count: int) -> list[np.ndarray]:
    """``count`` reference frames spread evenly over the pooled reference (the first one first)."""
    pooled = np.concatenate([t.xyz for t in reference.trajectories])
    indices = np.linspace(0, len(pooled) - 1, count).round().astype(int)
    return [pooled[i].astype(np.float64) for i in indices]


def _model_summary(model: str | os.PathLike | None) -> dict | None:
    if model is None:
        return None
    from openmm_timewarp.models.contract import load_metadata, resolve_model_path

    metadata = load_metadata(model)
    return {
        "path": str(resolve_model_path(model)),
        "name": metadata.name,
        "family": metadata.family,
        "tau_ps": metadata.tau_ps,
        "training": metadata.training,
    }


def _state_populations(labels: Sequence[np.ndarray], names: Sequence[str]) -> dict:
    """Population of each state with its error (from the ESS of the state's indicator)."""
    return {
        name: _population_record([chain == s for chain in labels]) for s, name in enumerate(names)
    }


def _reference_summary(reference: Reference) -> dict:
    labels = [_state_labels(t, reference) for t in reference.trajectories]
    halves = (
        [t[: len(t) // 2] for t in reference.trajectories],
        [t[len(t) // 2 :] for t in reference.trajectories],
    )
    return {
        "source": reference.source,
        "trajectories": len(reference.trajectories),
        "frames": int(sum(len(t) for t in reference.trajectories)),
        "frame_interval_ps": reference.frame_interval_ps,
        "length_ns": sum(len(t) for t in reference.trajectories)
        * reference.frame_interval_ps
        / 1e3,
        "tica_lag_frames": int(reference.tica.lagtime),
        "state_populations": _state_populations(labels, reference.state_names),
        "states_to_discover": [reference.state_names[s] for s in reference.states],
        # Finite-sample floor of the divergences: first half of the reference against the second.
        "jsd_ramachandran_halves": metrics.jensen_shannon_divergence(
            _ramachandran_histogram(halves[0]), _ramachandran_histogram(halves[1])
        ),
    }


def _compare_with_tempering(run, source: str, samplers: dict, plot_data: dict) -> dict:
    """The 310 K state of a parallel-tempering run against every sampler (dipeptides only).

    Adds ``vs_parallel_tempering`` to each sampler's record: the Ramachandran JSD and, for every
    basin and for phi > 0, the deviation in units of the combined error.
    """
    phi, psi = run.phi_by_state[:, 0], run.psi_by_state[:, 0]
    if any(angles[0].shape[1] != 1 for data in plot_data.values() for angles in data["angles"]):
        raise ValueError("the parallel-tempering reference applies to a dipeptide only")
    labels = metrics.ramachandran_states(phi, psi)
    histogram = metrics.histogram_2d(
        phi, psi, RAMACHANDRAN_BINS, [[-math.pi, math.pi], [-math.pi, math.pi]]
    )
    half = len(phi) // 2
    halves = [
        metrics.histogram_2d(
            phi[part], psi[part], RAMACHANDRAN_BINS, [[-math.pi, math.pi], [-math.pi, math.pi]]
        )
        for part in (slice(None, half), slice(half, None))
    ]
    summary = {
        "source": source,
        "iterations": run.iterations,
        "frames_at_target_temperature": len(phi),
        "state_populations": _state_populations([labels], metrics.RAMACHANDRAN_STATES),
        "phi_positive": _population_record([phi > 0]),
        "jsd_ramachandran_halves": metrics.jensen_shannon_divergence(*halves),
    }

    def deviation(record: dict, target: dict) -> float:
        spread = math.hypot(record["error"], target["error"])
        return (record["population"] - target["population"]) / max(spread, 1e-12)

    for name, result in samplers.items():
        trajectories_angles = plot_data[name]["angles"]
        sampler_histogram = metrics.histogram_2d(
            np.concatenate([a[0][:, 0] for a in trajectories_angles]),
            np.concatenate([a[1][:, 0] for a in trajectories_angles]),
            RAMACHANDRAN_BINS,
            [[-math.pi, math.pi], [-math.pi, math.pi]],
        )
        result["vs_parallel_tempering"] = {
            "jsd_ramachandran": metrics.jensen_shannon_divergence(sampler_histogram, histogram),
            "state_population_deviation_sigma": {
                state: deviation(result["state_populations"][state], target)
                for state, target in summary["state_populations"].items()
            },
            "phi_positive_deviation_sigma": deviation(
                result["phi_positive"], summary["phi_positive"]
            ),
        }
    return summary


def _ratios(samplers: dict) -> dict:
    ratios = {}
    if TIMEWARP not in samplers:
        return ratios
    timewarp = samplers[TIMEWARP]["ess"]
    for baseline in MD_PROTOCOLS:
        if baseline in samplers:
            md = samplers[baseline]["ess"]
            ratios[f"{TIMEWARP}/{baseline}"] = {
                key: _ratio(timewarp[key], md[key])
                for key in timewarp
                if timewarp[key]["ess_per_s"] > 0 and md[key]["ess_per_s"] > 0
            }
    return ratios


def fastest_md_baselines(samplers: dict) -> dict:
    """Per coordinate, the MD baseline with the highest ESS per second, and Timewarp's ratio to it.

    Each record holds the baseline's name, its ESS/s with error and whether its Sokal window
    closed (``reliable``); when Timewarp ran, ``ratio`` and ``error`` as in :func:`_ratio`.
    """
    baselines = [name for name in MD_PROTOCOLS if name in samplers]
    if not baselines:
        return {}
    timewarp = samplers[TIMEWARP]["ess"] if TIMEWARP in samplers else {}
    fastest = {}
    for key in samplers[baselines[0]]["ess"]:
        name = max(baselines, key=lambda baseline: samplers[baseline]["ess"][key]["ess_per_s"])
        md = samplers[name]["ess"][key]
        record = {
            "baseline": name,
            "ess_per_s": md["ess_per_s"],
            "ess_per_s_error": md["ess_per_s_error"],
            "reliable": md["reliable"],
        }
        if key in timewarp and timewarp[key]["ess_per_s"] > 0 and md["ess_per_s"] > 0:
            record.update(_ratio(timewarp[key], md))
        fastest[key] = record
    return fastest


def _discovery_speedups(samplers: dict, settings: BenchmarkSettings) -> dict:
    """MD's time to find every state over each Timewarp sampler's; a lower bound if MD never did."""
    speedups = {}
    for fast in (TIMEWARP, EXPLORATION):
        for slow in MD_PROTOCOLS:
            if fast not in samplers or slow not in samplers:
                continue
            t_fast = samplers[fast]["median_time_to_all_states_s"]
            t_slow = samplers[slow]["median_time_to_all_states_s"]
            if t_fast is None:
                record = {"speedup": None, "note": f"{fast} did not find every state"}
            elif t_slow is None:
                bound = settings.budget_s / settings.num_starts / max(t_fast, 1e-9)
                record = {"speedup": bound, "lower_bound": True}
            else:
                record = {"speedup": t_slow / max(t_fast, 1e-9), "lower_bound": False}
            speedups[f"{fast}/{slow}"] = record
    return speedups


# ----------------------------------------------------------------------------------------- output


def _plot(report: dict, data: dict, reference: Reference, output_dir: Path) -> dict:
    require("matplotlib").use("Agg")
    plt = require("matplotlib.pyplot")

    names = list(data)
    files = {}

    # Ramachandran free energies, reference first.
    reference_angles = [metrics.backbone_dihedrals(t) for t in reference.trajectories]
    panels = [("reference MD", reference_angles)] + [(n, data[n]["angles"]) for n in names]
    figure, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels) + 1, 3.4), squeeze=False, layout="constrained"
    )
    for axis, (title, angles) in zip(axes[0], panels, strict=True):
        phi = np.degrees(np.concatenate([a[0].ravel() for a in angles]))
        psi = np.degrees(np.concatenate([a[1].ravel() for a in angles]))
        counts, xe, ye = np.histogram2d(phi, psi, bins=RAMACHANDRAN_BINS, range=[[-180, 180]] * 2)
        with np.errstate(divide="ignore"):
            free_energy = -np.log(counts / counts.sum())
        free_energy -= np.nanmin(free_energy[np.isfinite(free_energy)], initial=0.0)
        mesh = axis.pcolormesh(xe, ye, free_energy.T, cmap="viridis", vmin=0, vmax=8)
        axis.set(title=title, xlabel="phi (deg)", ylabel="psi (deg)", aspect="equal")
    figure.colorbar(mesh, ax=axes[0].tolist(), label="free energy (kT)")
    files["ramachandran"] = _save(figure, output_dir / "ramachandran.png")

    # Free energy along TIC0 with block-error bands.
    edges = np.linspace(*reference.tic_range[0], 41)
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for title, tics in [("reference MD", _reference_tics(reference))] + [
        (n, data[n]["tics"]) for n in names
    ]:
        centers, free_energy, error = metrics.free_energy_profile([t[:, 0] for t in tics], edges)
        line = axis.plot(centers, free_energy, label=title)[0]
        axis.fill_between(
            centers, free_energy - error, free_energy + error, alpha=0.25, color=line.get_color()
        )
    axis.set(xlabel="TIC0", ylabel="free energy (kT)", ylim=(-0.5, 10))
    axis.legend(fontsize=7)
    figure.tight_layout()
    files["tic0_free_energy"] = _save(figure, output_dir / "tic0_free_energy.png")

    # Autocorrelation against wall-clock lag (the fair time axis) of TIC0 and of the cosine of
    # the dihedral that is slowest for the first sampler.
    slowest = report["samplers"][names[0]]["slowest_dihedral"]
    kind, residue = slowest[:3], int(slowest[3:])
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for name in names:
        tics, times = data[name]["tics"], data[name]["times"]
        spacing = data[name]["wall_s"] / sum(len(t) for t in tics)
        max_lag = min(map(len, times)) // 2
        dihedral = [np.cos(a[0 if kind == "phi" else 1][:, residue]) for a in data[name]["angles"]]
        for axis, series in zip(axes, ([t[:, 0] for t in tics], dihedral), strict=True):
            rho = metrics.autocorrelation_function(series, max_lag=max_lag)
            axis.plot(np.arange(1, len(rho)) * spacing, rho[1:], label=name)
    for axis, what in zip(axes, ("TIC0", f"cos {slowest}"), strict=True):
        axis.set(xscale="log", xlabel="lag (wall-clock s)", ylabel=f"autocorrelation of {what}")
        axis.axhline(0, color="grey", lw=0.5)
        axis.legend(fontsize=7)
    files["autocorrelation"] = _save(figure, output_dir / "autocorrelation.png")

    # Discovery curves (first chain of each sampler).
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    total = len(report["reference"]["states_to_discover"])
    for name in names:
        first = report["samplers"][name]["discovery"][0]["first_visit_s"]
        times, counts = metrics.discovery_curve(first)
        budget = report["samplers"][name]["wall_s"] / report["samplers"][name]["chains"]
        axis.step(
            np.append(np.maximum(times, 1e-4), budget),
            np.append(counts, counts[-1] if len(counts) else 0),
            where="post",
            label=name,
        )
    axis.axhline(total, color="grey", ls="--", lw=0.8)
    axis.set(xscale="log", xlabel="wall-clock s", ylabel="states discovered")
    axis.legend(fontsize=7)
    figure.tight_layout()
    files["discovery"] = _save(figure, output_dir / "discovery.png")
    plt.close("all")
    return files


def _save(figure, path: Path) -> str:
    figure.savefig(path, dpi=110)
    return path.name


def _format(value: float | None, error: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if error is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {error:.2g}"


def markdown_summary(report: dict) -> str:
    """The Markdown summary of a report: one table per aspect, the ratios and the targets."""
    samplers = report["samplers"]
    lines = [
        f"# Benchmark: {report['peptide']['sequence']} ({report['peptide']['termini']}), "
        f"{report['date']}",
        "",
        f"Machine: {report['machine']['processor']}, {report['machine']['cpu_count']} CPUs, "
        f"OpenMM {report['machine']['openmm']}, platform {report['machine']['platform']}. "
        f"Budget {report['settings']['budget_s']:g} s per sampler over "
        f"{report['settings']['num_starts']} start(s). Reference: "
        f"{report['reference']['length_ns']:.3g} ns of MD ({report['reference']['source']}).",
        "",
        "| sampler | wall s | frames | acceptance | ESS/s TIC0 | ESS/s slowest dihedral "
        "| all states found (s) | JSD Ramachandran | JSD TIC | phi > 0 population |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in samplers.items():
        slow = result["ess"][result["slowest_dihedral"]]
        tic0 = result["ess"]["tic0"]
        missed = len(result["states_visited"]) < len(report["reference"]["states_to_discover"])
        lines.append(
            f"| {name} | {result['wall_s']:.1f} | {result['frames']} | "
            f"{_format(result.get('acceptance'))} | "
            f"{_format(tic0['ess_per_s'], tic0['ess_per_s_error'])}{' *' if missed else ''} | "
            f"{_format(slow['ess_per_s'], slow['ess_per_s_error'])} "
            f"({result['slowest_dihedral']}) | "
            f"{_format(result['median_time_to_all_states_s'])} | "
            f"{result['jsd_ramachandran']:.3f} | {result['jsd_tic']:.3f} | "
            f"{_format(result['phi_positive']['population'], result['phi_positive']['error'])} |"
        )
    lines += [
        "",
        "\\* this sampler did not visit every state, so its ESS misses the slowest process (for "
        "TIC0, which describes that process, the value measures fast motion within one state).",
        f"Reference first half vs second half, JSD Ramachandran: "
        f"{report['reference']['jsd_ramachandran_halves']:.3f} (finite-sample floor).",
    ]
    if EXPLORATION in samplers:
        lines.append(
            f"{EXPLORATION} is not a Boltzmann sampler: its ESS, populations and divergences are "
            "shown for completeness, its use is discovery."
        )
    lines.append("")
    for name in (TIMEWARP, EXPLORATION):
        if name in samplers:
            per_start = ", ".join(f"{a:.3g}" for a in samplers[name]["acceptance_per_chain"])
            lines.append(f"- acceptance per start, {name}: {per_start}")
            for message in samplers[name].get("stuck_chains", []):
                lines.append(f"- warning, {name}: {message}")
    for pair, values in report["ratios"].items():
        formatted = ", ".join(f"{k} {_format(v['ratio'], v['error'])}" for k, v in values.items())
        lines.append(f"- ESS/s ratio {pair}: {formatted}")
    for key, record in report["fastest_md"].items():
        line = (
            f"- fastest MD baseline on {key}: {record['baseline']} (ESS/s "
            f"{_format(record['ess_per_s'], record['ess_per_s_error'])}"
            f"{'' if record['reliable'] else ', Sokal window not closed'})"
        )
        if "ratio" in record:
            line += (
                f"; {TIMEWARP} / {record['baseline']}: {_format(record['ratio'], record['error'])}"
            )
        lines.append(line)
    for pair, record in report["discovery_speedups"].items():
        bound = ">= " if record.get("lower_bound") else ""
        value = "-" if record["speedup"] is None else f"{bound}{record['speedup']:.3g}x"
        lines.append(f"- discovery speed-up {pair}: {value} {record.get('note', '')}".rstrip())
    for name in (TIMEWARP, EXPLORATION):
        if name in samplers and "profile" in samplers[name]:
            p = samplers[name]["profile"]
            lines.append(
                f"- time profile {name}: model calls {p['model_s']:.1f} s "
                f"({p['model_call_s'] * 1e3:.2f} ms per call of {p['mean_batch']:.1f} proposals), "
                f"energies {p['energy_s']:.1f} s ({p['energy_per_proposal_s'] * 1e6:.0f} us per "
                f"proposal), other {p['other_s']:.1f} s of {p['wall_s']:.1f} s"
            )
    lines += ["", "Targets (issue 6):", *_target_lines(report)]
    lines += ["", "Plots: " + ", ".join(f"![{k}]({v})" for k, v in report["files"].items()), ""]
    return "\n".join(lines)


def _target_lines(report: dict) -> list[str]:
    """Each target of the benchmark, met or missed and by what factor."""
    samplers, lines = report["samplers"], []
    ratios = report["ratios"].get(f"{TIMEWARP}/{MD_PRACTICAL}")
    if ratios:
        slowest = samplers[MD_PRACTICAL]["slowest_dihedral"]
        for key in ("tic0", slowest):
            if key in ratios:
                value = ratios[key]["ratio"]
                verdict = "met" if value >= 10 else f"missed by a factor {10 / value:.3g}"
                lines.append(
                    f"- Timewarp ESS/s >= 10x {MD_PRACTICAL} on {key}: "
                    f"{_format(value, ratios[key]['error'])}x, {verdict}"
                )
    speedup = report["discovery_speedups"].get(f"{EXPLORATION}/{MD_PRACTICAL}")
    if speedup and speedup["speedup"] is not None:
        value = speedup["speedup"]
        bound = ">= " if speedup.get("lower_bound") else ""
        verdict = (
            "met"
            if value >= 100
            else (
                "not shown (MD never found every state: longer budget needed)"
                if speedup.get("lower_bound")
                else f"missed by a factor {100 / value:.3g}"
            )
        )
        lines.append(
            f"- exploration finds every state >= 100x sooner: {bound}{value:.3g}x, {verdict}"
        )
    if TIMEWARP in samplers:
        reference = report["reference"]["state_populations"]
        mh = samplers[TIMEWARP]["state_populations"]
        z = state_population_deviations(report)
        worst = max(z, key=lambda name: abs(z[name]))
        verdict = _agreement(z[worst])
        lines.append(
            f"- MH state populations vs the reference: largest deviation {z[worst]:+.2g} sigma "
            f"({worst}: {_format(mh[worst]['population'], mh[worst]['error'])} vs "
            f"{_format(reference[worst]['population'], reference[worst]['error'])}), {verdict}"
        )
        if "parallel_tempering" in report:
            lines += _tempering_lines(report)
        floor = report["reference"]["jsd_ramachandran_halves"]
        value = samplers[TIMEWARP]["jsd_ramachandran"]
        verdict = "within" if value <= floor else "above"
        lines.append(
            f"- MH Ramachandran agrees with the reference: JSD {value:.3f}, {verdict} the "
            f"reference's own half-to-half JSD {floor:.3f}"
        )
    return lines or ["- no Timewarp sampler in this run"]


def state_population_deviations(report: dict) -> dict[str, float]:
    """(MH population - reference population) / combined standard error, for every state."""
    reference = report["reference"]["state_populations"]
    mh = report["samplers"][TIMEWARP]["state_populations"]
    return {
        name: (mh[name]["population"] - ref["population"])
        / max(math.hypot(mh[name]["error"], ref["error"]), 1e-12)
        for name, ref in reference.items()
    }


def _agreement(deviation_sigma: float) -> str:
    return "agree within 2 sigma" if abs(deviation_sigma) <= 2 else "differ by more than 2 sigma"


def _tempering_lines(report: dict) -> list[str]:
    """MH against the parallel-tempering reference: basin and phi > 0 populations, Ramachandran."""
    tempering, mh = report["parallel_tempering"], report["samplers"][TIMEWARP]
    comparison = mh["vs_parallel_tempering"]
    deviations = comparison["state_population_deviation_sigma"]
    worst = max(deviations, key=lambda state: abs(deviations[state]))
    target, measured = tempering["phi_positive"], mh["phi_positive"]
    return [
        f"- MH phi > 0 population vs parallel tempering: "
        f"{_format(measured['population'], measured['error'])} vs "
        f"{_format(target['population'], target['error'])} "
        f"({comparison['phi_positive_deviation_sigma']:+.2g} sigma), "
        f"{_agreement(comparison['phi_positive_deviation_sigma'])}",
        f"- MH basin populations vs parallel tempering: largest deviation "
        f"{deviations[worst]:+.2g} sigma ({worst}); Ramachandran JSD "
        f"{comparison['jsd_ramachandran']:.3f} (tempering half to half "
        f"{tempering['jsd_ramachandran_halves']:.3f})",
    ]


# -------------------------------------------------------------------------------------------- CLI


def add_benchmark_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``timewarp benchmark`` on a subparsers object (sets ``handler``)."""
    parser = subparsers.add_parser(
        "benchmark",
        help="Timewarp vs MD side by side for the same wall-clock budget",
        description="Run TimewarpIntegrator (MH and exploration) and LangevinMiddleIntegrator "
        "(0.5 fs no constraints; 2 fs HBonds; 4 fs HBonds with hydrogen mass repartitioning to "
        f"{HMR_HYDROGEN_MASS_AMU:g} amu) on one peptide for the same wall-clock budget each, in "
        "one process on one platform, and write report.json, summary.md and PNG plots; the "
        "summary names the fastest MD baseline per coordinate and Timewarp's ratio to it.",
    )
    defaults = BenchmarkSettings()
    parser.add_argument("sequence", help="one-letter codes, e.g. A (alanine dipeptide when capped)")
    parser.add_argument("--termini", choices=TERMINI, default="capped")
    parser.add_argument(
        "--model", help="proposal-model file or bundled name (e.g. alanine-dipeptide)"
    )
    parser.add_argument(
        "--system",
        type=Path,
        metavar="SYSTEM_XML",
        help="your own System of the peptide that `timewarp build` writes (XmlSerializer, same "
        "atoms in the same order) for every sampler; the reference MD stays amber14-all + OBC2 "
        "(default: that force field for the samplers too)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="report folder")
    parser.add_argument(
        "--budget", type=float, default=defaults.budget_s, help="wall s per sampler"
    )
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument(
        "--starts",
        type=int,
        default=defaults.num_starts,
        help="chains per sampler, started from reference frames spread evenly",
    )
    parser.add_argument(
        "--reference", type=Path, help="a `timewarp simulate` folder to compare with"
    )
    parser.add_argument(
        "--reference-ns",
        type=float,
        default=defaults.reference_ns,
        help="length of the generated reference MD (when --reference is not given)",
    )
    parser.add_argument(
        "--parallel-tempering",
        type=Path,
        help="output folder of `timewarp reference run` (dipeptides): a second, "
        "equilibrium reference for basin and phi > 0 populations",
    )
    parser.add_argument(
        "--cache", type=Path, default=Path("data/benchmark"), help="reference cache"
    )
    parser.add_argument("--tica-lag-ps", type=float, default=defaults.tica_lag_ps)
    parser.add_argument(
        "--timewarp-frame-interval",
        type=int,
        default=defaults.timewarp_frame_interval,
        help="MH iterations per recorded frame",
    )
    parser.add_argument("--md-frame-interval-ps", type=float, default=defaults.md_frame_interval_ps)
    parser.add_argument(
        "--exploration-threshold",
        type=float,
        default=defaults.exploration_threshold_kj_mol,
        help="kJ/mol",
    )
    parser.add_argument(
        "--max-proposal-batch",
        type=int,
        default=defaults.max_proposal_batch,
        help="default: the integrator's (1024 for independence models, else adaptive up to 64)",
    )
    parser.add_argument("--temperature", type=float, default=defaults.temperature_K, help="kelvin")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=defaults.torch_threads,
        help="threads for the proposal model (default 1, like the Reference platform)",
    )
    parser.add_argument("--platform", default=defaults.platform)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_benchmark_command)


def _benchmark_command(args: argparse.Namespace) -> int:
    settings = BenchmarkSettings(
        budget_s=args.budget,
        samplers=tuple(args.samplers),
        temperature_K=args.temperature,
        platform=args.platform,
        num_starts=args.starts,
        timewarp_frame_interval=args.timewarp_frame_interval,
        md_frame_interval_ps=args.md_frame_interval_ps,
        max_proposal_batch=args.max_proposal_batch,
        exploration_threshold_kj_mol=args.exploration_threshold,
        reference_ns=args.reference_ns,
        tica_lag_ps=args.tica_lag_ps,
        seed=args.seed,
        torch_threads=args.torch_threads,
    )
    run_benchmark(
        args.sequence,
        args.model,
        args.output,
        settings,
        termini=args.termini,
        reference_dir=args.reference,
        parallel_tempering_dir=args.parallel_tempering,
        cache_dir=args.cache,
        show_progress=not args.no_progress,
        system_file=args.system,
    )
    print((args.output / "summary.md").read_text())
    return 0
