"""Tests of MD's rate at the wall time per ns timed beside Timewarp, against hand-computed values,
with the control that a rate left at the long run's speed gives another ratio."""

import pytest

from openmm_timewarp.evaluation import heldout_table, md_timing


def _run(wall_s: float, simulated_ns: float, ess: float) -> dict:
    rate = {
        "ess_per_s": ess / wall_s,
        "ess_per_s_error": 0.1 * ess / wall_s,
        "tau_int_ps": 1000.0,
        "autocorrelation_times": 50.0,
        "long_enough": True,
    }
    return {
        "wall_s": wall_s,
        "simulated_ns": simulated_ns,
        "wall_s_per_ns": wall_s / simulated_ns,
        "ess": {"tic0": rate},
    }


def test_rates_scale_to_the_timed_speed_and_keep_the_run_own_statistics():
    # 100 ns in 10,000 s (100 s per ns), 400 ESS; timed beside Timewarp at 80 s per ns.
    run = _run(10_000.0, 100.0, 400.0)
    timed = md_timing.at_wall_s_per_ns(run, 80.0)
    assert timed["wall_s"] == pytest.approx(8_000.0) and timed["run_wall_s"] == 10_000.0
    assert timed["ess"]["tic0"]["ess_per_s"] == pytest.approx(400.0 / 8_000.0)
    assert timed["ess"]["tic0"]["ess_per_s_error"] == pytest.approx(40.0 / 8_000.0)
    assert timed["ess"]["tic0"]["long_enough"] and run["ess"]["tic0"]["ess_per_s"] == 0.04
    timewarp = {"ess_per_s": 1.0, "ess_per_s_error": 0.1, "window_closed": True}
    md = dict(timed["ess"]["tic0"], window_closed=True)
    assert heldout_table.rate_ratio(timewarp, md)["ratio"] == pytest.approx(20.0)
    # Control: the long run's own speed (hours apart) would have given 25x.
    untimed = dict(run["ess"]["tic0"], window_closed=True)
    assert heldout_table.rate_ratio(timewarp, untimed)["ratio"] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="wall_s_per_ns must be positive"):
        md_timing.at_wall_s_per_ns(run, 0.0)


def test_windows_combine_into_one_speed():
    windows = [{"wall_s": 30.0, "simulated_ns": 0.3}, {"wall_s": 30.0, "simulated_ns": 0.2}]
    timing = md_timing.combined(windows)
    assert timing["wall_s_per_ns"] == pytest.approx(60.0 / 0.5)
    assert timing["windows_wall_s_per_ns"] == pytest.approx([100.0, 150.0])
    with pytest.raises(ValueError, match="no MD timing windows"):
        md_timing.combined([])


def test_a_benchmark_times_the_long_run_by_its_own_run_of_the_baseline():
    run = _run(10_000.0, 100.0, 400.0)
    sampler = {
        "per_chain": [
            {"wall_s": 30.0, "simulated_ps": 400.0},
            {"wall_s": 30.0, "simulated_ps": 350.0},
        ]
    }
    timed = md_timing.timed_by_benchmark(run, sampler)
    assert timed["wall_s_per_ns"] == pytest.approx(80.0) and timed["timing"]["wall_s"] == 60.0
    assert timed["ess"]["tic0"]["ess_per_s"] == pytest.approx(0.05)
    # A baseline the benchmark did not run keeps the long run's own speed, marked untimed.
    untimed = md_timing.timed_by_benchmark(run, None)
    assert untimed["timing"] is None and untimed["ess"] == run["ess"]
