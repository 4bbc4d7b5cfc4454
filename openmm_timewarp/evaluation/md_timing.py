"""MD's wall time per simulated ns, timed beside the sampler it is compared with.

A long MD run takes hours, and this machine's speed drifts by up to 1.4x over hours
(docs/benchmarks.md, "Held-out evaluation against long MD runs"), so its average wall time per
ns is not the rate MD would have had while Timewarp ran. The held-out evaluation therefore takes
MD's ESS per simulated ns from the long run (which alone is long enough to close the window)
and its wall seconds per ns from short windows of the same MD, run in the same process right
before and right after Timewarp (:func:`time_md`, :func:`at_wall_s_per_ns`). ``timewarp benchmark
--md-rates`` does the same with its own run of each MD baseline, side by side with Timewarp
(:func:`timed_by_benchmark`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import openmm
import openmm.app as app

from openmm_timewarp.evaluation.runs import run_chain
from openmm_timewarp.evaluation.settings import BenchmarkSettings


def time_md(
    baseline: str,
    system: openmm.System,
    topology: app.Topology,
    start: np.ndarray,
    budget_s: float,
    settings: BenchmarkSettings,
    seed: int,
) -> dict:
    """Run MD ``baseline`` from ``start`` for ``budget_s`` wall seconds exactly as the long run
    runs (:func:`~openmm_timewarp.evaluation.runs.run_chain`: same System, integrator and frame
    recording); returns its ``wall_s`` (setup excluded, as for the long run) and
    ``simulated_ns``."""
    chain = run_chain(baseline, None, system, topology, start, budget_s, settings, seed)
    return {"wall_s": chain.wall_s, "simulated_ns": chain.counters["simulated_ps"] / 1000.0}


def combined(windows: Sequence[dict]) -> dict:
    """Several timing windows of :func:`time_md` as one: their wall and simulated times summed,
    with ``wall_s_per_ns`` and each window's own wall seconds per ns (their spread shows the
    drift within the comparison)."""
    if not windows:
        raise ValueError("no MD timing windows")
    wall_s = sum(window["wall_s"] for window in windows)
    simulated_ns = sum(window["simulated_ns"] for window in windows)
    return {
        "wall_s": wall_s,
        "simulated_ns": simulated_ns,
        "wall_s_per_ns": wall_s / simulated_ns,
        "windows_wall_s_per_ns": [w["wall_s"] / w["simulated_ns"] for w in windows],
    }


def at_wall_s_per_ns(run: dict, wall_s_per_ns: float) -> dict:
    """A long run's record (:func:`~openmm_timewarp.evaluation.md_rates.long_run_rates`) as if
    it had run at ``wall_s_per_ns``: ``wall_s`` becomes its simulated ns at that speed, and each
    coordinate's ESS per second (with its error) scales by the ratio of the two speeds; its ESS,
    autocorrelation times and ``long_enough`` are the run's own. ``run_wall_s`` keeps the wall
    time it took."""
    if not wall_s_per_ns > 0:
        raise ValueError(f"wall_s_per_ns must be positive, got {wall_s_per_ns}")
    timed = copy.deepcopy(run)
    factor = run["wall_s_per_ns"] / wall_s_per_ns
    timed["run_wall_s"] = run["wall_s"]
    timed["wall_s"] = run["simulated_ns"] * wall_s_per_ns
    timed["wall_s_per_ns"] = wall_s_per_ns
    for rate in timed["ess"].values():
        rate["ess_per_s"] *= factor
        rate["ess_per_s_error"] *= factor
    return timed


def timed_by_benchmark(run: dict, sampler: dict | None) -> dict:
    """A long run at the wall time per ns of the same MD baseline in the benchmark that reads it
    (``sampler``: its analysed chains, run minutes from Timewarp's on the same machine), with
    that ``timing``; unchanged, ``timing`` None, where the benchmark did not run that baseline."""
    if sampler is None:
        return dict(run, timing=None)
    timing = combined(
        [
            {"wall_s": chain["wall_s"], "simulated_ns": chain["simulated_ps"] / 1000.0}
            for chain in sampler["per_chain"]
        ]
    )
    return dict(at_wall_s_per_ns(run, timing["wall_s_per_ns"]), timing=timing)
