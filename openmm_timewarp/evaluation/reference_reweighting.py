"""Basin populations at 310 K from every replica of a parallel-tempering run, reweighted by MBAR.

The 310 K frames alone (:func:`~openmm_timewarp.evaluation.reference.read_state_trajectory`) are
one replica's worth of a run whose hotter replicas cross a rare basin many times more often: a
basin of 1% that the 310 K state entered in two episodes gets an error from the autocorrelation
of those two episodes, which cannot see how few they are. MBAR (pymbar, as openmmtools' own
analysis of multistate runs) weights every frame of every temperature to 310 K.

The error of a population is MBAR's asymptotic one (free energies' uncertainty included), which
counts every frame as independent, times the square root of the integrated autocorrelation time
of the per-iteration series of weighted deviations ``z_t = sum_r w_tr (A_tr - p)`` (``w`` the
frames' MBAR weights at the target state, ``A`` the basin indicator, ``r`` the replicas; the
estimate minus ``p`` is ``sum_t z_t``): so the correlation of each replica's frames in time and
through the exchanges both count. Like any autocorrelation-based error it needs a run of many
autocorrelation times: on a two-level system it is calibrated with about 300 per temperature
(tests/test_reference_reweighting.py) and about 25% too small with 40.
"""

from __future__ import annotations

import numpy as np

from openmm_timewarp.evaluation import heldout_basins, heldout_table, metrics, reference
from openmm_timewarp.optional import require


def reweighted_populations(
    reduced_potentials: np.ndarray,
    replica_states: np.ndarray,
    indicators: np.ndarray,
    state: int = 0,
) -> list[dict]:
    """Populations at thermodynamic state ``state`` of each indicator, from every frame, by MBAR.

    Args:
        reduced_potentials: ``[iterations, replicas, states]``, each frame's reduced potential at
            every state (what openmmtools' ``MultiStateReporter.read_energies`` stores).
        replica_states: ``[iterations, replicas]``, the state each frame was sampled at.
        indicators: ``[iterations, replicas, count]``, whether each frame is in each basin.
        state: the target state (0: the ladder's 310 K).

    Returns:
        Per indicator ``population``, ``error`` (see the module's docstring; floored as
        :func:`~openmm_timewarp.evaluation.heldout_table.binomial_error`), ``ess`` and
        ``statistical_inefficiency`` (the integrated autocorrelation time, in iterations, of the
        per-iteration series that scales MBAR's error).
    """
    pymbar = require("pymbar")
    iterations, replicas, states = reduced_potentials.shape
    if replica_states.shape != (iterations, replicas) or indicators.shape[:2] != (
        iterations,
        replicas,
    ):
        raise ValueError(
            f"shapes disagree: reduced potentials {reduced_potentials.shape}, replica states "
            f"{replica_states.shape}, indicators {indicators.shape}"
        )
    if not 0 <= state < states:
        raise ValueError(f"state must be in [0, {states}), got {state}")
    samples_per_state = np.bincount(replica_states.ravel(), minlength=states)
    mbar = pymbar.MBAR(
        reduced_potentials.reshape(-1, states).T,
        samples_per_state,
        # pymbar's default solver did not converge on a 6-temperature peptide run; from BAR's
        # estimates the robust protocol does.
        solver_protocol="robust",
        initialize="BAR",
    )
    weights = mbar.weights()[:, state].reshape(iterations, replicas)
    # Kish's effective number of frames: the fallback ESS of an indicator that never changes.
    kish = 1.0 / float(np.sum(weights**2))
    results = []
    for values in np.moveaxis(indicators.astype(float), 2, 0):
        if np.ptp(values) == 0:  # MBAR's error of a constant is undefined (log of zero)
            p, inefficiency, ess = float(values.flat[0]), 1.0, kish
        else:
            # pymbar takes the log of the indicator; its zeros are handled and need no warning.
            with np.errstate(divide="ignore"):
                expectation = mbar.compute_expectations(values.ravel(), compute_uncertainty=True)
            p = float(expectation["mu"][state])
            z = np.sum(weights * (values - p), axis=1)
            inefficiency = metrics.integrated_autocorrelation_time(z).tau_int
            variance = float(expectation["sigma"][state]) ** 2 * inefficiency
            ess = p * (1.0 - p) / variance if variance > 0 and 0 < p < 1 else kish
        results.append(
            {
                "population": p,
                "error": heldout_table.binomial_error(p, ess),
                "ess": ess,
                "statistical_inefficiency": inefficiency,
            }
        )
    return results


def reweighted_basins(frames: reference.ReplicaFrames, state: int = 0) -> tuple[dict, int]:
    """Every ``residue:basin`` population at the ladder's ``state`` (0: 310 K) from all replicas'
    ``frames`` of a run (:func:`~openmm_timewarp.evaluation.reference.read_replica_frames`; same
    names and basins as :func:`~openmm_timewarp.evaluation.heldout_basins.states_and_basins`), and
    the number of frames they come from."""
    iterations, replicas = frames.replica_states.shape
    names, columns = [], []
    for residue, _, labels, basins in heldout_basins.residue_basins(frames.trajectory):
        for b, basin in enumerate(basins):
            names.append(f"{residue}:{basin}")
            columns.append((labels == b).reshape(iterations, replicas))
    populations = reweighted_populations(
        frames.reduced_potentials, frames.replica_states, np.stack(columns, axis=2), state
    )
    return dict(zip(names, populations, strict=True)), iterations * replicas
