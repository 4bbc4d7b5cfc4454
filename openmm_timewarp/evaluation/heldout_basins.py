"""Backbone basins and states of held-out peptides' trajectories
(:mod:`openmm_timewarp.evaluation.heldout`): per residue its basin in every frame, per trajectory
the peptide's state in every frame, populations with errors, and the populations of the reference
runs and MD's long run together against which Timewarp's are tested."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from openmm_timewarp.evaluation import heldout_table, metrics
from openmm_timewarp.optional import require

mdtraj = require("mdtraj")


def residue_basins(trajectory: mdtraj.Trajectory) -> list[tuple[str, dict, np.ndarray, tuple]]:
    """Per residue with a backbone dihedral: its name, its angles by kind (``phi``, ``psi``), its
    basin labels and basin names."""
    phi_atoms, phi = mdtraj.compute_phi(trajectory)
    psi_atoms, psi = mdtraj.compute_psi(trajectory)
    # phi is C-N-CA-C and psi N-CA-C-N: the residue of the CA.
    residue_of = trajectory.topology.atom
    by_residue: dict[int, dict] = {}
    for atoms, values, kind in ((phi_atoms, phi, "phi"), (psi_atoms, psi, "psi")):
        for column, quadruple in enumerate(atoms):
            index = residue_of(int(quadruple[2 if kind == "phi" else 1])).residue.index
            by_residue.setdefault(index, {})[kind] = values[:, column]
    residues = []
    for index in sorted(by_residue):
        residue = trajectory.topology.residue(index)
        angles = by_residue[index]
        labels, basins = heldout_table.basin_labels(angles.get("phi"), angles.get("psi"))
        residues.append((f"{residue.name}{residue.resSeq}", angles, labels, basins))
    return residues


def states_and_basins(trajectories: Sequence[mdtraj.Trajectory]) -> tuple[list, dict]:
    """Per trajectory its state of every frame, and the population of every ``residue:basin``
    over all trajectories."""
    states, indicators, angles = [], {}, {}
    for trajectory in trajectories:
        residues = residue_basins(trajectory)
        states.append(
            np.asarray(
                heldout_table.combined_states(
                    [labels for _, _, labels, _ in residues], [basins for *_, basins in residues]
                )
            )
        )
        for name, residue_angles, labels, basins in residues:
            for kind, values in residue_angles.items():
                angles.setdefault(name, {}).setdefault(kind, []).append(values)
            for b, basin in enumerate(basins):
                indicators.setdefault(name, {}).setdefault(basin, []).append(labels == b)
    populations = {}
    for name, by_basin in indicators.items():
        residue_ess = min(metrics.dihedral_autocorrelation(v).ess for v in angles[name].values())
        for basin, values in by_basin.items():
            populations[f"{name}:{basin}"] = heldout_table.population(values, residue_ess)
    return states, populations


def reference_basins(
    reference_trajectories: Sequence[mdtraj.Trajectory],
    reference_interval_ps: float,
    md_trajectory: mdtraj.Trajectory,
    md_interval_ps: float,
) -> dict:
    """Every ``residue:basin`` population of the reference runs and MD's long run as one set of
    chains, all thinned to the coarser of their two frame intervals.

    MD's run samples the same distribution (its masses and time step change the dynamics only)
    and is often ten times longer than the references: it decides the rare basins, phi > 0
    included, that short references miss. Chains of one frame interval share one
    autocorrelation estimate; weighting separate runs by their ESS instead would let a short
    reference that never left a basin outweigh a long run with its fast within-basin ESS. MD's
    interval can be the coarser one: a long run doubles its interval each time it reaches
    ``max_frames`` frames.
    """
    reference_stride, md_stride = common_strides(reference_interval_ps, md_interval_ps)
    thinned = [trajectory[::reference_stride] for trajectory in reference_trajectories]
    _, populations = states_and_basins([*thinned, md_trajectory[::md_stride]])
    return populations


def common_strides(reference_interval_ps: float, md_interval_ps: float) -> tuple[int, int]:
    """The strides that bring frames ``reference_interval_ps`` and ``md_interval_ps`` apart to
    the coarser of the two intervals, which must be a whole multiple of the finer."""
    intervals = (reference_interval_ps, md_interval_ps)
    coarser = max(intervals)
    reference_stride, md_stride = (round(coarser / interval) for interval in intervals)
    if not (
        math.isclose(reference_stride * reference_interval_ps, coarser)
        and math.isclose(md_stride * md_interval_ps, coarser)
    ):
        raise ValueError(
            f"MD's frames ({md_interval_ps} ps apart) and the references' ({reference_interval_ps}"
            " ps) cannot be thinned to one interval; record MD with an --md-frame-interval-ps "
            "that divides the references' or is a whole multiple of it"
        )
    return reference_stride, md_stride


def basin_record(
    timewarp_basins: dict,
    reference_trajectories: Sequence[mdtraj.Trajectory],
    reference_interval_ps: float,
    md_trajectory: mdtraj.Trajectory,
    md: dict,
) -> dict:
    """Timewarp's basin populations against the references and MD's long run together
    (:func:`reference_basins`), and what they were measured against."""
    pooled = reference_basins(
        reference_trajectories, reference_interval_ps, md_trajectory, md["frame_interval_ps"]
    )
    reference_ns = sum(len(t) for t in reference_trajectories) * reference_interval_ps / 1000.0
    return {
        "basins": {
            name: heldout_table.population_deviation(timewarp_basins[name], pooled[name])
            for name in pooled
        },
        "basin_reference": {
            "runs": ["reference", md["baseline"]],
            "simulated_ns": reference_ns + md["simulated_ns"],
        },
    }
