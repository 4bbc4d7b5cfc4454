"""A rare state's population error per CPU second: Timewarp MH against parallel tempering.

A practitioner who wants the population of a rare basin (alanine dipeptide's phi > 0, about 2% at
310 K) runs parallel tempering, not plain MD. This module runs both samplers on the same peptide,
one after the other in this process, from the same minimised built structure:

- parallel tempering: the project's reference protocol (:func:`reference.run_reference`:
  openmmtools, 6 replicas 310-700 K, 1 ps of Langevin MD per replica between exchanges), stopped
  after a budget of process CPU seconds; its samples are the 310 K state's frames, one per
  iteration (the other replicas are not reweighted);
- Timewarp MH: ``TimewarpIntegrator`` with a proposal model, run as ``timewarp benchmark`` runs it
  (:func:`runs.run_chain`), for a budget of about the same size.

Each sampler's cost is the process CPU time (``time.process_time``: every thread of this process,
none of the other processes on a shared machine) from building its System to its last sample. The
first ``DISCARD_FRACTION`` of each run's samples is dropped as equilibration. The statistic is the
efficiency ``1 / (sigma^2 * CPU seconds)``, where ``sigma`` is the standard error of the basin's
population from the run's own autocorrelation: the larger of the binomial error with Sokal's
effective sample size and the batch-means error (the convention of the phi > 0 reference). Its
relative error is that of the variance estimate (Sokal's error of tau_int, or ``sqrt(2 / (B - 1))``
for B batch means); a ratio's relative error adds the two in quadrature. When a run is too short for
Sokal's window to close, or enters the state fewer than ``MIN_ENTRIES`` times, its sigma is not a
reliable estimate (usually too small, so its efficiency too high); the result says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit

from openmm_timewarp.data import peptides
from openmm_timewarp.evaluation import metrics, reference
from openmm_timewarp.evaluation.runs import run_chain
from openmm_timewarp.evaluation.settings import TIMEWARP, BenchmarkSettings
from openmm_timewarp.optional import require

mdtraj = require("mdtraj")

DISCARD_FRACTION = 0.1
NUM_BATCHES = 20
#: Fewer separate visits than this and a population's error estimate is itself unreliable: the
#: batch means and the autocorrelation then see a handful of events.
MIN_ENTRIES = 10
#: alanine dipeptide's rare state: phi > 0 (alphaL, C7ax and the edge of beta wrapped past 180).
PHI_POSITIVE = "phi>0"


@dataclass(frozen=True)
class PopulationEstimate:
    """A population from an indicator series, with its standard error from autocorrelation."""

    population: float
    #: The larger of the two errors below: the one the efficiency uses.
    error: float
    error_autocorrelation: float
    error_batch_means: float
    #: Relative error of ``error ** 2`` (that of the estimator the larger error came from).
    variance_relative_error: float
    samples: int
    tau_int: float
    #: Whether Sokal's window closed; if not, ``error_autocorrelation`` is a lower bound.
    window_closed: bool
    #: Separate visits: how often the series enters the state (a start inside counts as one).
    entries: int

    @property
    def reliable(self) -> bool:
        """Whether the error is an estimate rather than a guess from a few events."""
        return self.window_closed and self.entries >= MIN_ENTRIES


def population_estimate(
    indicator: np.ndarray, num_batches: int = NUM_BATCHES
) -> PopulationEstimate:
    """Population of a 0/1 series with the larger of its autocorrelation and batch-means errors."""
    values = np.asarray(indicator, dtype=float)
    if values.ndim != 1 or len(values) < 2 * num_batches or num_batches < 2:
        raise ValueError(
            f"need a 1-D series of at least {2 * num_batches} samples and 2 or more batches"
        )
    population = float(values.mean())
    autocorrelation = metrics.integrated_autocorrelation_time(values)
    error_ess = math.sqrt(population * (1 - population) / autocorrelation.ess)
    error_batches = metrics.block_standard_error(values, num_batches)
    if error_ess >= error_batches:
        error, relative = error_ess, autocorrelation.tau_int_error / autocorrelation.tau_int
    else:
        error, relative = error_batches, math.sqrt(2.0 / (num_batches - 1))
    return PopulationEstimate(
        population=population,
        error=error,
        error_autocorrelation=error_ess,
        error_batch_means=error_batches,
        variance_relative_error=relative,
        samples=len(values),
        tau_int=autocorrelation.tau_int,
        window_closed=autocorrelation.window_closed,
        entries=int(values[0] > 0) + int(np.count_nonzero(np.diff(values) > 0)),
    )


def efficiency(estimate: PopulationEstimate, cpu_s: float) -> tuple[float, float] | None:
    """``1 / (sigma^2 * cpu_s)`` and its error; None when the run never left or never entered the
    state (its series has no variance, so its error is unknown, not zero)."""
    if cpu_s <= 0:
        raise ValueError(f"cpu_s must be positive, got {cpu_s}")
    if estimate.error == 0:
        return None
    value = 1.0 / (estimate.error**2 * cpu_s)
    return value, value * estimate.variance_relative_error


def ratio_with_error(
    numerator: tuple[float, float], denominator: tuple[float, float]
) -> tuple[float, float]:
    """``a / b`` of two values with errors, relative errors added in quadrature."""
    (a, a_error), (b, b_error) = numerator, denominator
    ratio = a / b
    return ratio, abs(ratio) * math.hypot(a_error / a, b_error / b)


@dataclass
class SamplerRun:
    """One sampler's samples of the backbone dihedrals (radians) at 310 K and its cost."""

    name: str
    phi: np.ndarray
    psi: np.ndarray
    cpu_s: float
    wall_s: float
    details: dict

    def labels(self) -> np.ndarray:
        return metrics.ramachandran_states(self.phi, self.psi)


def _minimised_start(topology: openmm.app.Topology, system: openmm.System, positions) -> np.ndarray:
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    state = context.getState(getPositions=True)
    return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def run_parallel_tempering(
    sequence: str,
    termini: peptides.Termini,
    output_dir: str | Path,
    cpu_budget_s: float,
    steps_per_iteration: int = reference.STEPS_PER_ITERATION,
    torsion: int = 0,
) -> SamplerRun:
    """The reference protocol for ``cpu_budget_s`` of process CPU time, in a fresh folder,
    recording the peptide's ``torsion``-th phi and psi (:func:`reference.run_reference`)."""
    require("openmmtools.multistate")  # imported before the clock starts
    output_dir = Path(output_dir)
    if (output_dir / reference.STORAGE_NAME).exists():
        raise FileExistsError(f"{output_dir} holds a run already: a timed run starts afresh")
    cpu_begin, wall_begin = time.process_time(), time.perf_counter()
    iterations = reference.run_reference(
        output_dir,
        iterations=10**6,  # the CPU budget ends the run
        steps_per_iteration=steps_per_iteration,
        sequence=sequence,
        termini=termini,
        cpu_budget_s=cpu_budget_s,
        chunk=1,
        torsion=torsion,
    )
    cpu_s, wall_s = time.process_time() - cpu_begin, time.perf_counter() - wall_begin
    run = reference.read_run(output_dir, DISCARD_FRACTION)
    details = {
        "iterations": iterations,
        "temperatures_K": run.temperatures_K,
        "steps_per_iteration": run.steps_per_iteration,
        "exchange_acceptance_neighbours": run.exchange_acceptance_neighbours,
        "samples": "the 310 K state's frame of every iteration (no reweighting of the others)",
    }
    return SamplerRun(
        "parallel-tempering", run.phi_by_state[:, 0], run.psi_by_state[:, 0], cpu_s, wall_s, details
    )


def run_timewarp(
    sequence: str,
    termini: peptides.Termini,
    model: str,
    budget_s: float,
    seed: int = 1,
    torsion: int = 0,
) -> SamplerRun:
    """Timewarp MH from the minimised built peptide for ``budget_s`` wall seconds; its samples
    are the peptide's ``torsion``-th phi and psi, as :func:`run_parallel_tempering`'s."""
    settings = BenchmarkSettings(samplers=(TIMEWARP,), seed=seed)
    cpu_begin, wall_begin = time.process_time(), time.perf_counter()
    modeller = peptides.build_peptide(sequence, termini)
    system = peptides.create_system(modeller.topology)
    start = _minimised_start(modeller.topology, system, modeller.positions)
    chain = run_chain(TIMEWARP, model, system, modeller.topology, start, budget_s, settings, seed)
    cpu_s, wall_s = time.process_time() - cpu_begin, time.perf_counter() - wall_begin
    first = int(DISCARD_FRACTION * len(chain.positions))
    trajectory = mdtraj.Trajectory(
        chain.positions[first:], mdtraj.Topology.from_openmm(modeller.topology)
    )
    phi, psi = metrics.backbone_dihedrals(trajectory)
    details = dict(chain.counters, frames=len(chain.positions), steps_per_frame=chain.stride)
    return SamplerRun("timewarp", phi[:, torsion], psi[:, torsion], cpu_s, wall_s, details)


def rare_indicator(run: SamplerRun, state: str) -> np.ndarray:
    """1 where ``run`` is in ``state``: ``PHI_POSITIVE`` or a basin of ``RAMACHANDRAN_STATES``."""
    if state == PHI_POSITIVE:
        return run.phi > 0
    return run.labels() == metrics.RAMACHANDRAN_STATES.index(state)


def least_populated_basin(run: SamplerRun) -> str:
    """The Ramachandran basin with the smallest non-zero population in ``run``."""
    counts = np.bincount(run.labels(), minlength=len(metrics.RAMACHANDRAN_STATES))
    visited = [i for i in range(len(counts)) if counts[i] > 0]
    return metrics.RAMACHANDRAN_STATES[min(visited, key=lambda i: counts[i])]


def compare(timewarp: SamplerRun, tempering: SamplerRun, state: str) -> dict:
    """Population, error and efficiency of each sampler for ``state``, and their ratio."""
    record: dict = {"state": state, "samplers": {}}
    efficiencies = {}
    for run in (timewarp, tempering):
        estimate = population_estimate(rare_indicator(run, state))
        efficiencies[run.name] = efficiency(estimate, run.cpu_s)
        value, error = efficiencies[run.name] or (None, None)
        record["samplers"][run.name] = {
            "cpu_s": run.cpu_s,
            "wall_s": run.wall_s,
            **asdict(estimate),
            "reliable": estimate.reliable,
            "efficiency_per_cpu_s": value,
            "efficiency_error": error,
            "details": run.details,
        }
    record["ratio"] = None
    if None not in efficiencies.values():
        ratio, error = ratio_with_error(efficiencies[timewarp.name], efficiencies[tempering.name])
        record["ratio"] = {"value": ratio, "error": error}
    record["agreement_sigma"] = (
        record["samplers"][timewarp.name]["population"]
        - record["samplers"][tempering.name]["population"]
    ) / max(
        math.hypot(
            record["samplers"][timewarp.name]["error"], record["samplers"][tempering.name]["error"]
        ),
        1e-12,
    )
    return record


def summary_line(sequence: str, record: dict) -> str:
    """One line: the two populations, efficiencies and the ratio, with lower-bound marks."""
    parts = []
    for name, sampler in record["samplers"].items():
        text = (
            f"{name} {sampler['population']:.4f} +- {sampler['error']:.4f} in "
            f"{sampler['cpu_s']:.0f} CPU s"
        )
        if sampler["efficiency_per_cpu_s"] is None:
            text += ", never left or never entered the state (error unknown)"
        else:
            text += (
                f", efficiency {sampler['efficiency_per_cpu_s']:.3g} +- "
                f"{sampler['efficiency_error']:.2g} /CPU s"
            )
        if not sampler["window_closed"]:
            text += " (window not closed: error a lower bound)"
        if sampler["entries"] < MIN_ENTRIES:
            text += f" (only {sampler['entries']} entries: its error is a guess)"
        parts.append(text)
    ratio = record["ratio"]
    ratio_text = (
        "no ratio" if ratio is None else f"ratio {ratio['value']:.3g} +- {ratio['error']:.2g}"
    )
    return (
        f"{sequence} {record['state']}: " + "; ".join(parts) + f"; {ratio_text}; populations "
        f"differ by {record['agreement_sigma']:+.1f} sigma"
    )
