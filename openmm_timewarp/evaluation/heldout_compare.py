"""One held-out peptide's comparison: Timewarp's rates, basins and exploration against MD's.

The arithmetic (ratios, populations, first visits) lives in
:mod:`~openmm_timewarp.evaluation.heldout_table`, the basins in
:mod:`~openmm_timewarp.evaluation.heldout_basins`; :func:`compare` puts them together for
:func:`~openmm_timewarp.evaluation.heldout.evaluate_peptide`.
"""

from __future__ import annotations

import numpy as np

from openmm_timewarp.evaluation import heldout_basins, heldout_table
from openmm_timewarp.evaluation.md_reference import Reference
from openmm_timewarp.evaluation.runs import Chain
from openmm_timewarp.optional import require

mdtraj = require("mdtraj")


def compare(
    md: dict,
    timewarp: dict,
    reference: Reference,
    timewarp_trajectory: mdtraj.Trajectory,
    timewarp_times_s: np.ndarray,
    md_trajectory: mdtraj.Trajectory,
    min_state_population: float,
    exploration: Chain | None = None,
) -> dict:
    """Ratios, basin populations and exploration of one peptide: ``md`` is MD's long run
    (:func:`~openmm_timewarp.evaluation.md_rates.long_run_rates`, at the wall time per ns timed
    beside Timewarp), ``timewarp`` Timewarp's analysed chain, the trajectories their frames;
    ``exploration`` the exploration-mode chain, where run."""
    dihedrals = {key: rate for key, rate in md["ess"].items() if key != "tic0"}
    slowest = min(dihedrals, key=lambda key: dihedrals[key]["ess_per_s"])
    ratios = {
        "slowest_dihedral": heldout_table.rate_ratio(timewarp["ess"][slowest], md["ess"][slowest]),
        "tic0": heldout_table.rate_ratio(timewarp["ess"]["tic0"], md["ess"]["tic0"]),
    }
    reference_states, _ = heldout_basins.states_and_basins(reference.trajectories)
    (timewarp_states,), timewarp_basins = heldout_basins.states_and_basins([timewarp_trajectory])
    (md_states,), _ = heldout_basins.states_and_basins([md_trajectory])
    basins = heldout_basins.basin_record(
        timewarp_basins, reference.trajectories, reference.frame_interval_ps, md_trajectory, md
    )
    pooled = np.concatenate(reference_states)
    names, counts = np.unique(pooled, return_counts=True)
    wanted = [
        str(n)
        for n, c in zip(names, counts, strict=True)
        if c / len(pooled) >= min_state_population
    ]
    # MD records frames at a fixed interval of simulated time, so at a steady wall time per frame.
    md_times_s = md["wall_s"] * np.arange(1, len(md_states) + 1) / len(md_states)
    times = (
        heldout_table.first_visit_of_all(timewarp_states, timewarp_times_s, wanted),
        heldout_table.first_visit_of_all(md_states, md_times_s, wanted),
    )
    exploration_mode = None
    if exploration is not None:
        md_topology = md_trajectory.topology
        (states,), _ = heldout_basins.states_and_basins(
            [mdtraj.Trajectory(exploration.positions, md_topology)]
        )
        found = heldout_table.first_visit_of_all(states, exploration.times_s, wanted)
        exploration_mode = {
            "time_s": found,
            "wall_s": exploration.wall_s,
            "ratio": heldout_table.exploration_ratio(
                found, exploration.wall_s, times[1], md["wall_s"], len(wanted)
            ),
        }
    kept = (
        "ess_per_s",
        "ess_per_s_error",
        "tau_int_ps",
        "autocorrelation_times",
        "long_enough",
        "missed_reference_mass",
        "covers_reference",
    )
    return {
        "md_rates": {key: {k: rate[k] for k in kept} for key, rate in md["ess"].items()},
        "slowest_dihedral": slowest,
        "ratios": ratios,
        **basins,
        "states": wanted,
        "exploration": {
            "times_s": list(times),
            "ratio": heldout_table.exploration_ratio(
                times[0], timewarp["wall_s"], times[1], md["wall_s"], len(wanted)
            ),
        },
        "exploration_mode": exploration_mode,
    }
