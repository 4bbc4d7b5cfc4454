"""Sampling metrics of each sampler's chains, from their trajectories.

Per sampler: ESS and ESS per second of TIC0 and of every backbone dihedral (sin/cos, see
:mod:`openmm_timewarp.evaluation.metrics`) with errors; time to discover each state; Jensen-Shannon
divergences of the Ramachandran and TIC histograms against the reference; state and phi > 0
populations; where a Timewarp sampler's wall time went.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import openmm.app as app

from openmm_timewarp.evaluation import metrics
from openmm_timewarp.evaluation.md_reference import (
    Reference,
    reference_tics,
    state_labels,
)
from openmm_timewarp.evaluation.runs import Chain
from openmm_timewarp.optional import require
from openmm_timewarp.sampling.diagnostics import is_stuck, stuck_message

mdtraj = require("mdtraj")

RAMACHANDRAN_BINS = 36
TIC_BINS = 30


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


def ess_records(
    angles: Sequence[tuple[np.ndarray, np.ndarray]], tics: Sequence[np.ndarray], wall_s: float
) -> dict[str, dict]:
    """ESS and ESS per second of TIC0 and of every backbone dihedral (``phi0``, ``psi0``, ...),
    pooled over chains that together took ``wall_s`` seconds."""
    ess = {
        "tic0": _ess_record(
            metrics.integrated_autocorrelation_time([t[:, 0] for t in tics]), wall_s
        )
    }
    for kind, column in (("phi", 0), ("psi", 1)):
        for residue in range(angles[0][column].shape[1]):
            estimate = metrics.dihedral_autocorrelation([a[column][:, residue] for a in angles])
            ess[f"{kind}{residue}"] = _ess_record(estimate, wall_s)
    return ess


def _coordinate_values(
    angles: Sequence[tuple[np.ndarray, np.ndarray]], tics: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    """Pooled values of each coordinate of :func:`ess_records`, under the same keys."""
    values = {"tic0": np.concatenate([t[:, 0] for t in tics])}
    for kind, column in (("phi", 0), ("psi", 1)):
        for residue in range(angles[0][column].shape[1]):
            values[f"{kind}{residue}"] = np.concatenate([a[column][:, residue] for a in angles])
    return values


def mark_coverage(
    ess: dict[str, dict],
    angles: Sequence[tuple[np.ndarray, np.ndarray]],
    tics: Sequence[np.ndarray],
    reference: Reference,
) -> dict[str, dict]:
    """Add to each record of :func:`ess_records` the ``missed_reference_mass`` (the reference
    runs' share in the coordinate's bins this run never visited) and ``covers_reference``
    (:data:`~openmm_timewarp.evaluation.metrics.MAX_MISSED_MASS`)."""
    values = _coordinate_values(angles, tics)
    reference_values = _coordinate_values(
        [metrics.backbone_dihedrals(t) for t in reference.trajectories], reference_tics(reference)
    )
    circle = np.linspace(-math.pi, math.pi, metrics.COVERAGE_BINS + 1)
    for key, record in ess.items():
        if key == "tic0":
            low, high = reference_values[key].min(), reference_values[key].max()
            edges = np.linspace(low, max(high, low + 1e-12), metrics.COVERAGE_BINS + 1)
        else:
            edges = circle
        missed = metrics.missed_mass(values[key], reference_values[key], edges)
        record["missed_reference_mass"] = missed
        record["covers_reference"] = missed < metrics.MAX_MISSED_MASS
    return ess


def population_record(indicators: Sequence[np.ndarray]) -> dict:
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

    ess = mark_coverage(ess_records(angles, tics, wall_s), angles, tics, reference)
    dihedral_keys = [k for k in ess if k != "tic0"]
    slowest = min(dihedral_keys, key=lambda k: ess[k]["ess"])

    discovery = []
    labels = [state_labels(trajectory, reference) for trajectory in trajectories]
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
        "state_populations": state_populations(labels, reference.state_names),
        "phi_positive": population_record([(a[0] > 0).any(axis=1) for a in angles]),
        "left_handed": population_record([lh.any(axis=1) for lh in left_handed]),
        "jsd_ramachandran": metrics.jensen_shannon_divergence(
            _ramachandran_histogram(trajectories), _ramachandran_histogram(reference.trajectories)
        ),
        "jsd_tic": metrics.jensen_shannon_divergence(
            _tic_histogram(tics, reference), _tic_histogram(reference_tics(reference), reference)
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


def state_populations(labels: Sequence[np.ndarray], names: Sequence[str]) -> dict:
    """Population of each state with its error (from the ESS of the state's indicator)."""
    return {
        name: population_record([chain == s for chain in labels]) for s, name in enumerate(names)
    }


def reference_summary(reference: Reference) -> dict:
    labels = [state_labels(t, reference) for t in reference.trajectories]
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
        "state_populations": state_populations(labels, reference.state_names),
        "states_to_discover": [reference.state_names[s] for s in reference.states],
        # Finite-sample floor of the divergences: first half of the reference against the second.
        "jsd_ramachandran_halves": metrics.jensen_shannon_divergence(
            _ramachandran_histogram(halves[0]), _ramachandran_histogram(halves[1])
        ),
    }
