"""The error of a basin population from chains that switch basins rarely: calibrated against
two-state Markov chains whose population is known, with the autocorrelation-only error as the
control that must fail."""

import math

import numpy as np
import pytest

from openmm_timewarp.evaluation import heldout_table, metrics

FRAMES = 20_000
REPLICATES = 400


def two_state_chain(rng: np.random.Generator, leave_in: float, leave_out: float) -> np.ndarray:
    """In-state indicator of a stationary two-state Markov chain that leaves the state with
    probability ``leave_in`` per frame and enters it with ``leave_out``."""
    inside = rng.random() < leave_out / (leave_in + leave_out)
    sojourns, frames = [], 0
    while frames < FRAMES:
        length = int(rng.geometric(leave_in if inside else leave_out))
        sojourns.append(np.full(length, inside))
        frames += length
        inside = not inside
    return np.concatenate(sojourns)[:FRAMES]


def coverages(leave_in: float, leave_out: float) -> tuple[float, float]:
    """Shares of replicate chains whose population lies within 2 errors of the exact one: with
    :func:`heldout_table.population`'s error, and with the autocorrelation window's alone."""
    rng = np.random.default_rng(17)
    exact = leave_out / (leave_in + leave_out)
    inside = np.zeros(2)
    for _ in range(REPLICATES):
        chain = two_state_chain(rng, leave_in, leave_out)
        for k, error_of in enumerate((switching_aware, autocorrelation_only)):
            population, error = error_of(chain)
            inside[k] += abs(population - exact) < 2.0 * error
    return tuple(inside / REPLICATES)


def switching_aware(chain: np.ndarray) -> tuple[float, float]:
    estimate = heldout_table.population([chain])
    return estimate["population"], estimate["error"]


def autocorrelation_only(chain: np.ndarray) -> tuple[float, float]:
    p = float(chain.mean())
    if p in (0.0, 1.0):
        return p, heldout_table.binomial_error(p, 1.0)
    ess = metrics.integrated_autocorrelation_time(chain.astype(float)).ess
    return p, heldout_table.binomial_error(p, ess)


@pytest.mark.parametrize(("leave_in", "leave_out"), [(1e-4, 1e-4), (2e-4, 2e-4)])
def test_rare_switches_keep_the_two_sigma_coverage(leave_in, leave_out):
    # 2 and 4 switches in 20,000 frames on average. Measured (seed 17): coverage 0.86 and 0.85,
    # against 0.64 and 0.66 from the window alone; a coverage from 400 chains has an error of
    # 0.02.
    switching, window_only = coverages(leave_in, leave_out)
    assert switching >= 0.80
    # Control that must fail: the window alone claims too small an error.
    assert window_only <= 0.75


def test_a_rare_state_keeps_the_two_sigma_coverage():
    # 9% of the time in the state, 3.6 switches on average: coverage 0.88 (window alone 0.78).
    switching, _ = coverages(1e-4, 1e-3)
    assert switching >= 0.82


def test_frequent_switches_agree_with_the_autocorrelation_error():
    # About 400 switches: for a two-state process both estimate the same ESS, so the error
    # grows only where the window's estimate happens to be the larger (measured: median 1.01,
    # at most 1.20 times).
    rng = np.random.default_rng(3)
    ratios = [
        switching_aware(chain)[1] / autocorrelation_only(chain)[1]
        for chain in (two_state_chain(rng, 0.02, 0.02) for _ in range(50))
    ]
    assert np.median(ratios) <= 1.05 and max(ratios) <= 1.3
    assert coverages(0.02, 0.02)[0] >= 0.92


def test_one_switch_and_stuck_chains_are_one_effective_sample():
    half = np.arange(1000) < 500
    one_switch = heldout_table.population([half])
    assert one_switch["switches"] == 1
    assert one_switch["ess"] == pytest.approx(1.0, rel=0.01)
    assert one_switch["error"] == pytest.approx(0.5, rel=0.01)
    # Two chains that each stayed where they started: one switch between them.
    stuck = heldout_table.population([np.ones(500, bool), np.zeros(500, bool)])
    assert stuck["switches"] == 0
    assert stuck["ess"] == pytest.approx(1.0, rel=0.01)
    # A rare state left once: about 1 / (4 p (1 - p)) with p = 0.1, an ESS of 1 / 0.36.
    rare = heldout_table.population([np.arange(1000) < 100])
    rate = 1 / (2 * 1000 * 0.1 * 0.9)
    assert rare["ess"] == pytest.approx(1000 * rate / (2 - rate))
    assert rare["ess"] == pytest.approx(1.0 / 0.36, rel=0.01)
    assert rare["error"] == pytest.approx(math.sqrt(0.36 * 0.64 * 0.36), rel=0.01)


def test_uncorrelated_frames_are_not_capped():
    # Frames that switch at random: s = 1, no bound; the window's ESS stays (about every frame).
    assert heldout_table.switching_ess(0.5, 500, 1000) == math.inf
    rng = np.random.default_rng(0)
    independent = heldout_table.population([rng.random(4000) < 0.3])
    assert independent["ess"] > 2000
