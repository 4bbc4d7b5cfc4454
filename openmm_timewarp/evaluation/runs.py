"""Running each sampler for a wall-clock budget and recording its frames.

Everything inside the loop counts towards the budget: model calls, energies, force evaluations,
reading positions back and Python overhead. Context creation (and the model load it implies) is
reported separately as ``setup_s``. Frames are recorded every ``timewarp_frame_interval`` MH
iterations and every ``md_frame_interval_ps`` of MD; a Timewarp frame reads positions back only
when a proposal was accepted since the last frame (otherwise the state is unchanged). When a chain
reaches ``max_frames`` frames, every second frame is dropped and the stride doubles, so memory stays
bounded and the spacing stays uniform.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
from tqdm import tqdm

from openmm_timewarp.data.peptides import (
    build_peptide,
    create_system,
    read_system,
    with_hbond_constraints,
    with_hydrogen_mass,
)
from openmm_timewarp.evaluation.settings import (
    EXPLORATION,
    MD_FRICTION_PER_PS,
    MD_PROTOCOLS,
    BenchmarkSettings,
)
from openmm_timewarp.progress import progress_bar


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
        compiled=settings.compiled,
    )


def peptide_system(
    sequence: str, termini: str, system_file: str | os.PathLike | None = None
) -> tuple[app.Topology, openmm.System]:
    """The built peptide's Topology and the System the samplers run: amber14-all + OBC2, or the
    serialized System in ``system_file`` (same atoms, same order)."""
    topology = build_peptide(sequence, termini).topology
    if system_file is None:
        return topology, create_system(topology)
    return topology, read_system(system_file, topology)


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


def budget_progress(name: str, budget_s: float, enabled: bool = True) -> tqdm:
    """A progress bar of one sampler over its wall-clock budget, in seconds."""
    return progress_bar(
        total=budget_s,
        desc=name,
        unit="s",
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s",
        enabled=enabled,
    )


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
