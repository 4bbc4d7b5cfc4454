"""The rare-state comparison: its population errors, efficiencies and a tiny end-to-end run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openmm_timewarp.evaluation import rare_state


def two_state_chains(
    population: float, stay: float, length: int, count: int, seed: int
) -> np.ndarray:
    """``count`` 0/1 Markov chains with stationary P(1) = ``population``, started from it; the
    lag-1 autocorrelation is ``stay`` (leave 1 with probability (1 - stay) (1 - population))."""
    rng = np.random.default_rng(seed)
    enter, leave = (1 - stay) * population, (1 - stay) * (1 - population)
    chains = np.empty((count, length), dtype=bool)
    chains[:, 0] = rng.random(count) < population
    for t in range(1, length):
        u = rng.random(count)
        chains[:, t] = np.where(chains[:, t - 1], u >= leave, u < enter)
    return chains


def test_population_error_matches_the_spread_of_independent_runs():
    # A rare, sticky state: population 0.05, lag-1 correlation 0.9 (tau_int = 19).
    chains = two_state_chains(0.05, 0.9, 20_000, 100, seed=3)
    estimates = [rare_state.population_estimate(chain) for chain in chains]
    spread = np.std([chain.mean() for chain in chains], ddof=1)
    mean_error = np.mean([estimate.error for estimate in estimates])
    assert mean_error == pytest.approx(spread, rel=0.2)
    assert np.mean([e.population for e in estimates]) == pytest.approx(0.05, abs=3 * spread / 10)
    assert all(estimate.reliable for estimate in estimates)
    # Entries into the state: about population x (1 - stay) per step.
    assert np.mean([e.entries for e in estimates]) == pytest.approx(
        20_000 * 0.05 * 0.95 * 0.1, rel=0.1
    )
    # Control: the binomial error that ignores autocorrelation is several times too small.
    naive = math.sqrt(0.05 * 0.95 / 20_000)
    assert naive < 0.4 * spread


def test_efficiency_and_ratio_errors():
    chain = two_state_chains(0.1, 0.5, 4_000, 1, seed=5)[0]
    estimate = rare_state.population_estimate(chain)
    value, error = rare_state.efficiency(estimate, cpu_s=2.0)
    assert value == pytest.approx(1 / (estimate.error**2 * 2.0))
    assert error == pytest.approx(value * estimate.variance_relative_error)
    # Twice the CPU for the same error halves the efficiency.
    assert rare_state.efficiency(estimate, cpu_s=4.0)[0] == pytest.approx(value / 2)
    ratio, ratio_error = rare_state.ratio_with_error((value, error), (value / 2, error / 2))
    assert ratio == pytest.approx(2.0)
    assert ratio_error == pytest.approx(2.0 * math.sqrt(2) * error / value)
    with pytest.raises(ValueError):
        rare_state.efficiency(estimate, cpu_s=0.0)
    with pytest.raises(ValueError):
        rare_state.population_estimate(chain[:10])


def test_least_populated_basin_ignores_unvisited_basins():
    # beta, alphaR, alphaL (phi, psi in degrees); C7ax never visited.
    phi = np.radians([-120.0] * 6 + [-70.0] * 3 + [60.0])
    psi = np.radians([140.0] * 6 + [-40.0] * 3 + [40.0])
    run = rare_state.SamplerRun("test", phi, psi, cpu_s=1.0, wall_s=1.0, details={})
    assert rare_state.least_populated_basin(run) == "alphaL"
    assert rare_state.rare_indicator(run, rare_state.PHI_POSITIVE).sum() == 1
    assert rare_state.rare_indicator(run, "alphaR").sum() == 3
    # A state never visited has no measured error: no efficiency, no ratio (not an infinite one).
    never = rare_state.population_estimate(np.zeros(100, dtype=bool))
    assert never.error == 0 and rare_state.efficiency(never, cpu_s=1.0) is None
    once = rare_state.population_estimate(np.arange(100) == 50)
    assert once.entries == 1 and not once.reliable
    phi = np.radians(np.resize([-120.0, -70.0], 100))
    visits = rare_state.SamplerRun("test", phi, phi, cpu_s=1.0, wall_s=1.0, details={})
    record = rare_state.compare(visits, visits, rare_state.PHI_POSITIVE)
    assert record["ratio"] is None and "no ratio" in rare_state.summary_line("A", record)


@pytest.mark.slow
def test_tiny_comparison_of_both_samplers(tmp_path):
    pytest.importorskip("openmmtools")
    tempering = rare_state.run_parallel_tempering(
        "A", "capped", tmp_path / "pt", cpu_budget_s=3.0, steps_per_iteration=20
    )
    assert tempering.cpu_s >= 3.0 and len(tempering.phi) >= 40
    assert tempering.details["steps_per_iteration"] == 20
    with pytest.raises(FileExistsError):  # a timed run never resumes another
        rare_state.run_parallel_tempering("A", "capped", tmp_path / "pt", cpu_budget_s=1.0)
    timewarp = rare_state.run_timewarp("A", "capped", "alanine-dipeptide", budget_s=2.0)
    assert timewarp.details["accepted"] > 0 and timewarp.cpu_s > 0
    record = rare_state.compare(timewarp, tempering, "beta")
    assert set(record["samplers"]) == {"timewarp", "parallel-tempering"}
    # Timewarp leaves the beta start within seconds; parallel tempering this short may not.
    assert record["samplers"]["timewarp"]["efficiency_per_cpu_s"] > 0
    pt_efficiency = record["samplers"]["parallel-tempering"]["efficiency_per_cpu_s"]
    assert (record["ratio"] is None) == (pt_efficiency is None)
    assert "beta" in rare_state.summary_line("A", record)
