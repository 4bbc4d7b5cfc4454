"""Basin populations reweighted from every replica of a tempering run (MBAR), against a two-level
system whose populations at every temperature are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymbar")

from openmm_timewarp.evaluation.reference_reweighting import reweighted_populations  # noqa: E402

BETAS = 1.0 / np.array([1.0, 1.3, 1.7, 2.2])  # four temperatures, the first the target
GAP = 6.0  # energy of the excited level
DEGENERACY = 20.0  # its entropy: rare at the coldest state (2.4%), common at the hottest (39%)


def exact_population(beta: float) -> float:
    weight = DEGENERACY * np.exp(-beta * GAP)
    return float(weight / (1.0 + weight))


def sticky_tempering(iterations: int, stickiness: float, seed: int):
    """Tempering-like data: one stationary chain per state that keeps its level with probability
    ``stickiness`` (else redraws it), the states dealt to replicas by a random permutation per
    iteration as exchanges would; reduced potentials of every frame at every state."""
    rng = np.random.default_rng(seed)
    states = len(BETAS)
    exact = np.array([exact_population(beta) for beta in BETAS])
    levels = np.empty((iterations, states), dtype=bool)
    levels[0] = rng.random(states) < exact
    for t in range(1, iterations):
        fresh = rng.random(states) < exact
        keep = rng.random(states) < stickiness
        levels[t] = np.where(keep, levels[t - 1], fresh)
    replica_states = np.stack([rng.permutation(states) for _ in range(iterations)])
    excited = np.take_along_axis(levels, replica_states, axis=1)  # [iterations, replicas]
    reduced = excited[:, :, None] * GAP * BETAS[None, None, :]
    return reduced, replica_states, excited[:, :, None]


def test_population_at_the_coldest_state_matches_the_exact_one():
    reduced, replica_states, indicators = sticky_tempering(4000, 0.9, seed=1)
    (result,) = reweighted_populations(reduced, replica_states, indicators)
    exact = exact_population(BETAS[0])
    assert abs(result["population"] - exact) < 3.0 * result["error"]
    # Every temperature's frames contribute: the error beats the coldest state's frames alone.
    cold = indicators[replica_states == 0, 0]
    g = (1 + 0.9) / (1 - 0.9)  # the sticky chain's statistical inefficiency
    assert result["error"] < np.sqrt(exact * (1 - exact) * g / cold.size)
    # Another target state: the hottest.
    (hot,) = reweighted_populations(reduced, replica_states, indicators, state=3)
    assert abs(hot["population"] - exact_population(BETAS[3])) < 3.0 * hot["error"]


RUNS = 60
ITERATIONS = 2000
STICKINESS = 0.75  # statistical inefficiency (1 + 0.75) / (1 - 0.75) = 7: about 290 effective


def test_errors_are_calibrated_for_correlated_frames_and_an_iid_error_is_not():
    """Over independent runs the deviations in units of the error have a spread of 1; the same
    estimate with the correlation ignored (the control) claims errors several times too small."""
    exact = exact_population(BETAS[0])
    scores, naive_scores = [], []
    for seed in range(RUNS):
        reduced, replica_states, indicators = sticky_tempering(ITERATIONS, STICKINESS, 100 + seed)
        (result,) = reweighted_populations(reduced, replica_states, indicators)
        deviation = result["population"] - exact
        scores.append(deviation / result["error"])
        naive_error = result["error"] / np.sqrt(result["statistical_inefficiency"])
        naive_scores.append(deviation / naive_error)
    spread, naive_spread = np.std(scores), np.std(naive_scores)
    print(f"spread {spread:.3f}, with the correlation ignored {naive_spread:.3f}")
    # The sample spread of RUNS unit normals is 1 within 3 x 1 / sqrt(2 RUNS) = 0.27.
    assert 0.73 < spread < 1.27, spread
    assert naive_spread > 1.9, naive_spread  # about sqrt(7) = 2.6 expected
    assert abs(np.mean(scores)) < 3.0 / np.sqrt(RUNS)


def test_an_unvisited_basin_gets_the_error_of_one_effective_sample_and_bad_shapes_are_refused():
    reduced, replica_states, indicators = sticky_tempering(500, 0.5, seed=3)
    never = np.zeros_like(indicators)
    (result,) = reweighted_populations(reduced, replica_states, never)
    assert result["population"] == 0.0
    ess = result["ess"]
    assert result["error"] == pytest.approx(np.sqrt((1 / ess) * (1 - 1 / ess) / ess))
    assert result["error"] > 0
    with pytest.raises(ValueError, match="shapes disagree"):
        reweighted_populations(reduced, replica_states[:-1], indicators)
    with pytest.raises(ValueError, match="state must be in"):
        reweighted_populations(reduced, replica_states, indicators, state=4)
