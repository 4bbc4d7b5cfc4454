"""Tests of the sampling-quality metrics on series with known answers."""

import math

import numpy as np
import pytest
from deeptime.util.stats import statistical_inefficiency

from openmm_timewarp.evaluation import metrics


def ar1(rho: float, length: int, rng: np.random.Generator) -> np.ndarray:
    """AR(1) series x_t = rho x_{t-1} + noise, started in equilibrium: tau_int = (1+rho)/(1-rho)."""
    noise = rng.normal(size=length) * math.sqrt(1.0 - rho**2)
    series = np.empty(length)
    series[0] = rng.normal()
    for t in range(1, length):
        series[t] = rho * series[t - 1] + noise[t]
    return series


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.97])
def test_ar1_integrated_autocorrelation_time(rho):
    rng = np.random.default_rng(12345)
    estimate = metrics.integrated_autocorrelation_time(ar1(rho, 100_000, rng))
    exact = (1 + rho) / (1 - rho)
    assert estimate.reliable
    assert abs(estimate.tau_int - exact) < 3 * estimate.tau_int_error
    assert estimate.ess == pytest.approx(100_000 / estimate.tau_int)
    assert estimate.ess_error == pytest.approx(
        estimate.ess * estimate.tau_int_error / estimate.tau_int
    )


def test_ar1_several_chains_pool_to_the_same_time():
    rng = np.random.default_rng(7)
    rho = 0.8
    chains = [ar1(rho, 20_000, rng) for _ in range(5)]
    estimate = metrics.integrated_autocorrelation_time(chains)
    assert estimate.num_samples == 100_000
    assert abs(estimate.tau_int - 9.0) < 3 * estimate.tau_int_error


def test_agrees_with_deeptime_statistical_inefficiency():
    rng = np.random.default_rng(3)
    series = ar1(0.9, 50_000, rng)
    estimate = metrics.integrated_autocorrelation_time(series)
    # deeptime returns 1 / tau_int (its tau is half of ours) from the ACF cut at its first zero.
    deeptime_tau = 1.0 / statistical_inefficiency([series])
    assert abs(estimate.tau_int - deeptime_tau) < 3 * estimate.tau_int_error


def test_stuck_chains_have_no_effective_samples_beyond_one_per_state():
    estimate = metrics.integrated_autocorrelation_time(np.ones(1000))
    assert estimate.ess == pytest.approx(1.0)
    assert not estimate.reliable
    # Two chains stuck in different states: fully correlated, so the window never closes.
    stuck = metrics.integrated_autocorrelation_time([np.zeros(500), np.ones(500)])
    assert not stuck.reliable
    assert stuck.ess < 5


def test_bad_series_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        metrics.integrated_autocorrelation_time(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        metrics.integrated_autocorrelation_time(np.zeros((10, 2)))


def test_dihedral_ess_sees_a_slow_switch_that_only_cosine_resolves():
    rng = np.random.default_rng(11)
    # psi switching slowly between -40 and 150 degrees (sin nearly equal, cos opposite)...
    basin = (ar1(0.995, 40_000, rng) > 0).astype(float)
    psi = np.radians(np.where(basin > 0, 150.0, 30.0) + rng.normal(0, 10, size=basin.size))
    slow = metrics.dihedral_autocorrelation(psi)
    cos_only = metrics.integrated_autocorrelation_time(np.cos(psi))
    assert slow.ess == pytest.approx(cos_only.ess)
    # ...and iid angles across the +-180 cut are independent despite their jumps in raw value.
    uniform = rng.uniform(-math.pi, math.pi, size=20_000)
    assert metrics.dihedral_autocorrelation(uniform).tau_int == pytest.approx(1.0, abs=0.15)


def test_ramachandran_states():
    points_deg = {
        (-150, 150): "beta",
        (-70, -40): "alphaR",
        (60, 40): "alphaL",
        (70, -70): "C7ax",
        (170, 170): "beta",  # the beta basin wrapped around phi = +-180
        (-80, 70): "beta",  # C7eq counts with beta
    }
    phi, psi = np.radians(np.array(list(points_deg)).T)
    labels = metrics.ramachandran_states(phi, psi)
    assert [metrics.RAMACHANDRAN_STATES[i] for i in labels] == list(points_deg.values())


def test_discovery_times_on_a_toy_series():
    labels = np.array([0, 0, 1, 1, 0, 3, 1])
    times = np.arange(7) * 0.5
    first = metrics.discovery_times(labels, times, states=[0, 1, 2, 3])
    assert first == {0: 0.0, 1: 1.0, 2: None, 3: 2.5}
    assert metrics.time_to_discover_all(first) is None
    found = metrics.discovery_times(labels, times, states=[0, 1, 3])
    assert metrics.time_to_discover_all(found) == 2.5
    curve_times, counts = metrics.discovery_curve(first)
    np.testing.assert_array_equal(curve_times, [0.0, 1.0, 2.5])
    np.testing.assert_array_equal(counts, [1, 2, 3])
    with pytest.raises(ValueError, match="shape"):
        metrics.discovery_times(labels, times[:3], states=[0])


def test_jensen_shannon_divergence():
    p = np.array([[0.5, 0.5], [0.0, 0.0]])
    assert metrics.jensen_shannon_divergence(p, p) == pytest.approx(0.0)
    assert metrics.jensen_shannon_divergence(p, p[::-1]) == pytest.approx(1.0)
    # Half the mass shared: JSD = 0.5 bit.
    q = np.array([[0.5, 0.0], [0.5, 0.0]])
    assert metrics.jensen_shannon_divergence(p, q) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.jensen_shannon_divergence(p, np.zeros(3))


def test_histograms_of_the_same_distribution_are_close():
    rng = np.random.default_rng(5)
    value_range = [[-math.pi, math.pi], [-math.pi, math.pi]]
    a = metrics.histogram_2d(*rng.normal(0, 1, size=(2, 50_000)), bins=20, value_range=value_range)
    b = metrics.histogram_2d(*rng.normal(0, 1, size=(2, 50_000)), bins=20, value_range=value_range)
    c = metrics.histogram_2d(*rng.normal(1, 1, size=(2, 50_000)), bins=20, value_range=value_range)
    assert a.sum() == pytest.approx(1.0)
    assert metrics.jensen_shannon_divergence(a, b) < 0.01
    assert metrics.jensen_shannon_divergence(a, c) > 0.1


def test_free_energy_profile_of_a_uniform_distribution_is_flat_within_error():
    rng = np.random.default_rng(9)
    edges = np.linspace(0.0, 1.0, 11)
    centers, free_energy, error = metrics.free_energy_profile(rng.uniform(size=100_000), edges)
    np.testing.assert_allclose(centers, np.linspace(0.05, 0.95, 10))
    assert np.all(np.isfinite(error))
    # F is flat up to the shift that puts its minimum at 0.
    assert np.all(np.abs(free_energy - free_energy.mean()) < 5 * error.max())
    assert error.max() < 0.05


def test_tica_finds_the_slow_coordinate_and_kmeans_states_split_it():
    rng = np.random.default_rng(2)
    slow = ar1(0.99, 20_000, rng)
    fast = rng.normal(size=20_000)
    features = np.stack([fast + 0.1 * slow, slow], axis=1)
    tica = metrics.fit_tica(features, lagtime=10, dim=1)
    tic0 = tica.transform(features)[:, 0]
    assert abs(np.corrcoef(tic0, slow)[0, 1]) > 0.95
    states = metrics.kmeans_states(tic0[:, None], num_states=2)
    labels = states.assign(tic0[:, None])
    assert set(np.unique(labels)) == {0, 1}
    with pytest.raises(ValueError, match="lagtime"):
        metrics.fit_tica(features, lagtime=0)


def test_block_error_sees_autocorrelation():
    # AR(1), rho 0.9, unit variance: the error of the mean is sqrt(tau_int / N) = sqrt(19 / N).
    rng = np.random.default_rng(7)
    series = ar1(0.9, 100_000, rng)
    exact = math.sqrt(19.0 / len(series))
    # 20 blocks give the error to about sqrt(1 / (2 x 19)) = 16%; allow 3 of those.
    assert metrics.block_standard_error(series, 20) == pytest.approx(exact, rel=0.5)
    # Control: blocks of a single frame are the naive error, several times too small.
    assert metrics.block_standard_error(series, len(series)) < exact / 3
    with pytest.raises(ValueError):
        metrics.block_standard_error(series[:5], 10)
