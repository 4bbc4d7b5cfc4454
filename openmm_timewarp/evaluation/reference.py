"""A converged reference for the phi > 0 population of alanine dipeptide, by parallel tempering.

Plain 310 K MD from the usual start almost never crosses to phi > 0 (about once per 40 ns), so the
population of that region, which an exact Timewarp chain must reproduce, is computed here with
openmmtools' ``ParallelTemperingSampler``: capped alanine dipeptide (amber14-all + OBC2 as a native
``GBSAOBCForce``, no constraints, no cutoff) on the Reference platform, replicas on a geometric
temperature ladder from 310 K, ``LangevinMiddleIntegrator`` moves between exchange attempts.

The run is resumable: its state lives in an openmmtools NetCDF storage in the output directory, and
calling :func:`run_reference` again continues from the last checkpoint up to the requested number of
iterations. :func:`analyze_reference` reads the 310 K state's trajectory of the backbone atoms and
returns the population of phi > 0 with two error estimates: from the integrated autocorrelation time
of the indicator and from block averages. The same protocol runs other peptides (``sequence``,
``termini``), analysing one phi and one psi (``torsion``: a zwitterionic dipeptide's phi of
residue 2 and psi of residue 1; a longer peptide's k-th of each) but recording the atoms of every
backbone torsion, so that :func:`read_state_trajectory` gives each residue's basins at 310 K (and
:func:`read_replica_frames` every temperature's frames, for reweighting); it can stop at a budget
of process CPU seconds (``cpu_budget_s``), for timed comparisons.

Command line::

    timewarp reference run --output data/reference --iterations 20000
    timewarp reference analyze --output data/reference
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit

from openmm_timewarp.data import peptides
from openmm_timewarp.evaluation.metrics import (
    block_standard_error,
    integrated_autocorrelation_time,
)
from openmm_timewarp.optional import require
from openmm_timewarp.progress import progress_bar

mdtraj = require("mdtraj")

STORAGE_NAME = "parallel_tempering.nc"
#: The peptide of a run and where its phi and psi atoms are among the stored backbone atoms.
PEPTIDE_NAME = "peptide.json"
RESULT_NAME = "phi_positive_population.json"
TEMPERATURE_K = 310.0
MAX_TEMPERATURE_K = 700.0
NUM_REPLICAS = 6
TIMESTEP_FS = 1.0
STEPS_PER_ITERATION = 1000
COLLISION_RATE_PER_PS = 1.0
CHECKPOINT_INTERVAL = 50
#: phi of the left-handed basins (alphaL, C7ax) lies in (0, 120) degrees; phi in (120, 180) is the
#: edge of the beta basin that wraps around +-180, which the literal "phi > 0" includes.
LEFT_HANDED_PHI_MAX_DEG = 120.0


def geometric_temperatures(t_min: float, t_max: float, count: int) -> list[float]:
    """``count`` temperatures (K) from ``t_min`` to ``t_max``, constant ratio between neighbours."""
    if count < 2 or not 0 < t_min < t_max:
        raise ValueError(
            f"need at least 2 replicas and 0 < t_min < t_max, got {count}, {t_min}, {t_max}"
        )
    return list(np.geomspace(t_min, t_max, count))


def _backbone_atoms(
    topology: openmm.app.Topology, torsion: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """The atoms of every phi and psi of the peptide, in topology order (capped alanine
    dipeptide: C, N, CA, C, N), and the positions among them of the four atoms of its
    ``torsion``-th phi and psi (N- to C-terminus).

    Every torsion's atoms are recorded, not only the chosen pair's, so that a run also gives each
    residue's basins (:func:`read_state_trajectory`); they are a few atoms per residue."""
    phis, psis = peptides.backbone_torsions(topology)
    count = min(len(phis), len(psis))
    if not 0 <= torsion < count:
        raise ValueError(
            f"the peptide has {len(phis)} phi and {len(psis)} psi torsions: torsion must be "
            f"between 0 and {count - 1}, got {torsion}"
        )
    atoms = sorted({i for quadruple in (*phis, *psis) for i in quadruple})
    return atoms, [atoms.index(i) for i in phis[torsion]], [atoms.index(i) for i in psis[torsion]]


def run_reference(
    output_dir: str | Path,
    iterations: int,
    temperatures: Sequence[float] | None = None,
    steps_per_iteration: int = STEPS_PER_ITERATION,
    timestep_fs: float = TIMESTEP_FS,
    chunk: int = CHECKPOINT_INTERVAL,
    sequence: str = "A",
    termini: peptides.Termini = "capped",
    cpu_budget_s: float | None = None,
    torsion: int = 0,
) -> int:
    """Run (or continue) parallel tempering of a peptide up to ``iterations`` iterations.

    Args:
        output_dir: where the NetCDF storage lives; an existing storage there is resumed, and the
            other arguments are then taken from it.
        iterations: total number of exchange iterations wanted; one iteration propagates every
            replica by ``steps_per_iteration`` steps of ``timestep_fs``.
        temperatures: the ladder in K (first one the target, 310 K); default 6 replicas, 310-700 K.
        sequence, termini: the peptide (``peptides.build_peptide``); default capped alanine.
        cpu_budget_s: stop at the first checkpoint (every :data:`CHECKPOINT_INTERVAL`
            iterations, where a resumed run restarts) past this many seconds of this process's
            CPU time (counted from the call), even before ``iterations``.
        torsion: which phi and psi the run analyses (:func:`_backbone_atoms`): the first by
            default; a zwitterionic peptide's k-th phi is residue k + 2's, its k-th psi residue
            k + 1's.

    Returns:
        The number of completed iterations.
    """
    require("openmmtools")
    from openmmtools import cache, mcmc, multistate, states

    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    cpu_begin = time.process_time()
    # openmmtools logs a warning per call that its multistate API is experimental.
    logging.getLogger("openmmtools").setLevel(logging.ERROR)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    storage = output_dir / STORAGE_NAME
    platform = openmm.Platform.getPlatformByName("Reference")

    if storage.exists():
        reporter = multistate.MultiStateReporter(str(storage), open_mode="r+")
        sampler = multistate.ParallelTemperingSampler.from_storage(reporter)
    else:
        temperatures = list(
            temperatures or geometric_temperatures(TEMPERATURE_K, MAX_TEMPERATURE_K, NUM_REPLICAS)
        )
        if not math.isclose(temperatures[0], TEMPERATURE_K):
            raise ValueError(f"the ladder must start at {TEMPERATURE_K} K, got {temperatures[0]}")
        modeller = peptides.build_peptide(sequence, termini)
        atoms, phi_atoms, psi_atoms = _backbone_atoms(modeller.topology, torsion)
        system = peptides.create_system(modeller.topology)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
        context.setPositions(modeller.positions)
        openmm.LocalEnergyMinimizer.minimize(context)
        positions = context.getState(getPositions=True).getPositions(asNumpy=True)
        del context

        reference_state = states.ThermodynamicState(system, TEMPERATURE_K * unit.kelvin)
        move = mcmc.LangevinDynamicsMove(
            timestep=timestep_fs * unit.femtoseconds,
            collision_rate=COLLISION_RATE_PER_PS / unit.picoseconds,
            n_steps=steps_per_iteration,
            reassign_velocities=False,
        )
        sampler = multistate.ParallelTemperingSampler(
            mcmc_moves=move, number_of_iterations=iterations, online_analysis_interval=None
        )
        reporter = multistate.MultiStateReporter(
            str(storage),
            checkpoint_interval=CHECKPOINT_INTERVAL,
            analysis_particle_indices=atoms,
        )
        sampler.create(
            reference_state,
            states.SamplerState(positions),
            reporter,
            temperatures=[t * unit.kelvin for t in temperatures],
            # openmmtools 0.27 sizes the ladder by n_temperatures even when given temperatures.
            n_temperatures=len(temperatures),
        )
        with open(output_dir / f"{sequence}-{termini}.pdb", "w") as handle:
            openmm.app.PDBFile.writeFile(modeller.topology, positions, handle)
        peptide = {
            "sequence": sequence,
            "termini": termini,
            "torsion": torsion,
            "atoms": atoms,
            "phi": phi_atoms,
            "psi": psi_atoms,
        }
        (output_dir / PEPTIDE_NAME).write_text(json.dumps(peptide) + "\n")

    for context_cache in ("energy_context_cache", "sampler_context_cache"):
        setattr(sampler, context_cache, cache.ContextCache(platform=platform))

    # With a CPU budget the budget ends the run, so the bar counts its CPU seconds.
    total = iterations if cpu_budget_s is None else round(cpu_budget_s)

    def done() -> int:
        if cpu_budget_s is None:
            return min(sampler.iteration, total)
        return min(round(time.process_time() - cpu_begin), total)

    unit_name = "it" if cpu_budget_s is None else " CPU s"
    with progress_bar(
        desc="parallel tempering", total=total, initial=done(), unit=unit_name
    ) as progress:
        while sampler.iteration < iterations:
            steps = min(chunk, iterations - sampler.iteration)
            if cpu_budget_s is not None and time.process_time() - cpu_begin >= cpu_budget_s:
                # A resumed run restarts at its last checkpoint, so a budget ends the run at one.
                to_checkpoint = -sampler.iteration % reporter.checkpoint_interval
                if to_checkpoint == 0:
                    break
                steps = min(steps, to_checkpoint)
            sampler.extend(steps)
            progress.set_postfix(iteration=sampler.iteration, refresh=False)
            progress.update(done() - progress.n)
    completed = sampler.iteration
    reporter.close()
    return completed


@dataclass
class ReplicaRun:
    """What a stored run holds, after equilibration: dihedrals by temperature and run statistics."""

    phi_by_state: np.ndarray  # [iterations, temperatures], radians; column 0 is 310 K
    psi_by_state: np.ndarray
    iterations: int
    temperatures_K: list[float]
    steps_per_iteration: int
    timestep_fs: float
    exchange_acceptance_neighbours: list[float]
    wall_seconds_per_iteration: float | None


@dataclass
class _StoredRun:
    """A stored run's recorded positions after equilibration, its peptide file and the run
    statistics a :class:`ReplicaRun` reports (its fields other than the dihedrals)."""

    positions: np.ndarray  # [iterations, replicas, recorded atoms, 3], nm
    replica_states: np.ndarray  # [iterations, replicas]: each replica's thermodynamic state
    reduced_potentials: np.ndarray  # [iterations, replicas, states]: each frame at every state
    peptide: dict
    statistics: dict


def _read_storage(output_dir: str | Path, discard_fraction: float) -> _StoredRun:
    """Read a stored run (also while it is still running), dropping the first iterations."""
    # Read while the run is still writing: HDF5's file lock would refuse the second open. HDF5
    # reads this when it loads, so it is set before netCDF4 (and openmmtools) are imported.
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    multistate = require("openmmtools.multistate")
    import netCDF4  # installed with openmmtools

    if not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction}")
    logging.getLogger("openmmtools").setLevel(logging.ERROR)
    storage = Path(output_dir) / STORAGE_NAME
    if not storage.exists():
        raise FileNotFoundError(f"no parallel-tempering storage at {storage}; run `run` first")
    reporter = multistate.MultiStateReporter(str(storage), open_mode="r")
    try:
        last = reporter.read_last_iteration(last_checkpoint=False)
        replica_states = reporter.read_replica_thermodynamic_states()
        thermodynamic_states, _ = reporter.read_thermodynamic_states()
        accepted, proposed = reporter.read_mixing_statistics()
        reduced_potentials, _, _ = reporter.read_energies()
        move = reporter.read_mcmc_moves()[0]
        timestamps = reporter.read_timestamp()
    finally:
        reporter.close()
    first = max(1, int(discard_fraction * last))
    if last < first:
        raise ValueError(f"the run at {storage} has no iterations after equilibration yet")
    # The recorded atoms' positions (nm) of every replica and iteration, read in one go.
    with netCDF4.Dataset(storage) as dataset:
        positions = np.asarray(dataset.variables["positions"][first : last + 1])
    # Runs stored before other peptides were supported have no peptide file.
    peptide_file = Path(output_dir) / PEPTIDE_NAME
    return _StoredRun(
        positions=positions,
        replica_states=np.asarray(replica_states[first : last + 1]),
        reduced_potentials=np.asarray(reduced_potentials[first : last + 1]),
        peptide=json.loads(peptide_file.read_text()) if peptide_file.exists() else {},
        statistics={
            "iterations": int(last),
            "temperatures_K": [
                s.temperature.value_in_unit(unit.kelvin) for s in thermodynamic_states
            ],
            "steps_per_iteration": int(move.n_steps),
            "timestep_fs": float(move.timestep.value_in_unit(unit.femtoseconds)),
            "exchange_acceptance_neighbours": _neighbour_acceptance(accepted, proposed),
            "wall_seconds_per_iteration": _seconds_per_iteration(timestamps, last),
        },
    )


def read_run(output_dir: str | Path, discard_fraction: float = 0.1) -> ReplicaRun:
    """Read a stored run's recorded phi and psi (also while it is still running), dropping the
    first iterations."""
    run = _read_storage(output_dir, discard_fraction)
    # Runs stored before other peptides were supported hold alanine dipeptide's C, N, CA, C, N.
    torsions = [run.peptide.get("phi", [0, 1, 2, 3]), run.peptide.get("psi", [1, 2, 3, 4])]
    # Dihedrals of every replica, then re-ordered by thermodynamic state: [iterations, states].
    num_iterations, num_replicas, num_atoms = run.positions.shape[:3]
    flat = _backbone_trajectory(run.positions.reshape(-1, num_atoms, 3))
    dihedrals = mdtraj.compute_dihedrals(flat, torsions)
    rows = np.arange(num_iterations)[:, None]
    by_state = []
    for column in range(2):
        ordered = np.empty((num_iterations, num_replicas))
        ordered[rows, run.replica_states] = dihedrals[:, column].reshape(
            num_iterations, num_replicas
        )
        by_state.append(ordered)
    return ReplicaRun(phi_by_state=by_state[0], psi_by_state=by_state[1], **run.statistics)


def read_state_trajectory(
    output_dir: str | Path, discard_fraction: float = 0.1, state: int = 0
) -> mdtraj.Trajectory:
    """The recorded backbone atoms in thermodynamic state ``state`` (0: 310 K), one frame per
    iteration after equilibration, with the peptide's residues: each residue's phi and psi, for
    its basins (:func:`openmm_timewarp.evaluation.heldout_basins.states_and_basins`)."""
    return read_replica_frames(output_dir, discard_fraction).at_state(state)


@dataclass
class ReplicaFrames:
    """Every replica's recorded frames after equilibration, for reweighting to one temperature."""

    trajectory: mdtraj.Trajectory  # iterations x replicas frames, iteration-major
    replica_states: np.ndarray  # [iterations, replicas]: each frame's thermodynamic state
    reduced_potentials: np.ndarray  # [iterations, replicas, states]: each frame at every state
    temperatures_K: list[float]  # the ladder, state by state

    def state_at(self, temperature_K: float) -> int:
        """The ladder's state at ``temperature_K`` (within 1 K)."""
        for state, ladder_K in enumerate(self.temperatures_K):
            if abs(ladder_K - temperature_K) <= 1.0:
                return state
        ladder = ", ".join(f"{t:.1f}" for t in self.temperatures_K)
        raise ValueError(f"no state of the ladder at {temperature_K:g} K; it has {ladder} K")

    def at_state(self, state: int) -> mdtraj.Trajectory:
        """The frames of thermodynamic state ``state``, one per iteration."""
        iterations, replicas = self.replica_states.shape
        if not 0 <= state < replicas:
            raise ValueError(f"state must be in [0, {replicas}), got {state}")
        # The replica that held ``state`` at each iteration.
        replica = np.argmax(self.replica_states == state, axis=1)
        return self.trajectory[np.arange(iterations) * replicas + replica]


def read_replica_frames(output_dir: str | Path, discard_fraction: float = 0.1) -> ReplicaFrames:
    """The recorded backbone atoms of every replica and iteration after equilibration, with the
    peptide's residues, and each frame's reduced potential at every temperature of the ladder."""
    run = _read_storage(output_dir, discard_fraction)
    topology = _recorded_topology(output_dir, run.peptide)
    num_atoms = run.positions.shape[2]
    return ReplicaFrames(
        trajectory=mdtraj.Trajectory(run.positions.reshape(-1, num_atoms, 3), topology),
        replica_states=run.replica_states,
        reduced_potentials=run.reduced_potentials,
        temperatures_K=run.statistics["temperatures_K"],
    )


def _recorded_topology(output_dir: str | Path, peptide: dict) -> mdtraj.Topology:
    """The peptide's topology restricted to the atoms a run recorded (every backbone torsion's)."""
    if "atoms" not in peptide:
        raise ValueError(
            f"the run at {output_dir} recorded one phi and one psi only (it predates recording "
            "every backbone torsion): start a new run for every residue's basins"
        )
    structure = Path(output_dir) / f"{peptide['sequence']}-{peptide['termini']}.pdb"
    return mdtraj.load_topology(str(structure)).subset(peptide["atoms"])


def analyze_reference(
    output_dir: str | Path, discard_fraction: float = 0.1, num_blocks: int = 10
) -> dict:
    """Population of phi > 0 at 310 K from the stored run, with errors; also written as JSON.

    The first ``discard_fraction`` of the iterations is dropped as equilibration. Reported:
    ``phi_positive`` (0 < phi < 180 degrees) and ``left_handed`` (0 < phi < 120 degrees, the alphaL
    and C7ax basins without the wrapped edge of beta), each with ``error_ess`` (binomial error with
    the effective sample size of the indicator series) and ``error_blocks`` (block averages).
    """
    run = read_run(output_dir, discard_fraction)
    phi_by_state = np.degrees(run.phi_by_state)
    phi = phi_by_state[:, 0]
    if len(phi) < 4 * num_blocks:
        raise ValueError(f"only {len(phi)} iterations after equilibration; run longer")
    result: dict = {
        "iterations": run.iterations,
        "iterations_analysed": len(phi),
        "temperatures_K": run.temperatures_K,
        "steps_per_iteration": run.steps_per_iteration,
        "timestep_fs": run.timestep_fs,
        "exchange_acceptance_neighbours": run.exchange_acceptance_neighbours,
        "wall_seconds_per_iteration": run.wall_seconds_per_iteration,
        # Convergence diagnostics: how often the 310 K state entered phi > 0, and the population
        # at each temperature of the ladder (it must rise with temperature).
        "entries_into_phi_positive_at_310K": int(
            np.count_nonzero(np.diff(phi > 0) & (phi[1:] > 0))
        ),
        "phi_positive_by_temperature": (phi_by_state > 0).mean(axis=0).tolist(),
    }
    for name, indicator in (
        ("phi_positive", phi > 0),
        ("left_handed", (phi > 0) & (phi < LEFT_HANDED_PHI_MAX_DEG)),
    ):
        values = indicator.astype(float)
        population = float(values.mean())
        autocorrelation = integrated_autocorrelation_time(values)
        result[name] = {
            "population": population,
            "error_ess": math.sqrt(population * (1 - population) / autocorrelation.ess),
            "error_blocks": block_standard_error(values, num_blocks),
            "ess": autocorrelation.ess,
            "tau_int_iterations": autocorrelation.tau_int,
        }
    (Path(output_dir) / RESULT_NAME).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _backbone_trajectory(xyz: np.ndarray) -> mdtraj.Trajectory:
    """An mdtraj trajectory of the stored backbone atoms (their names do not matter here)."""
    topology = mdtraj.Topology()
    residue = topology.add_residue("BB", topology.add_chain())
    for _ in range(xyz.shape[1]):
        topology.add_atom("X", mdtraj.element.carbon, residue)
    return mdtraj.Trajectory(xyz, topology)


def _neighbour_acceptance(accepted: np.ndarray, proposed: np.ndarray) -> list[float]:
    """Exchange acceptance between neighbouring temperatures, summed over all iterations."""
    accepted, proposed = accepted.sum(axis=0), proposed.sum(axis=0)
    rates = []
    for i in range(len(accepted) - 1):
        tries = proposed[i, i + 1] + proposed[i + 1, i]
        rates.append(float((accepted[i, i + 1] + accepted[i + 1, i]) / tries) if tries else 0.0)
    return rates


def _seconds_per_iteration(timestamps: np.ndarray, last: int) -> float | None:
    """Mean wall time per iteration over the last stretch without a restart gap."""
    stamps = [time.mktime(time.strptime(str(s))) for s in timestamps[1 : last + 1]]
    differences = np.diff(stamps)
    differences = differences[differences < 600]  # drop pauses between resumed runs
    return float(differences.mean()) if len(differences) else None
