"""Comparisons across samplers and references: ESS-per-second ratios, the fastest MD baseline per
coordinate, discovery speed-ups and the parallel-tempering reference."""

from __future__ import annotations

import math

import numpy as np

from openmm_timewarp.evaluation import metrics
from openmm_timewarp.evaluation.analysis import (
    RAMACHANDRAN_BINS,
    population_record,
    state_populations,
)
from openmm_timewarp.evaluation.settings import (
    EXPLORATION,
    MD_PROTOCOLS,
    TIMEWARP,
    BenchmarkSettings,
)


def ess_ratio(numerator: dict, denominator: dict) -> dict:
    """ESS/s ratio with the relative errors added in quadrature."""
    a, b = numerator["ess_per_s"], denominator["ess_per_s"]
    ratio = a / b
    relative = math.hypot(numerator["ess_per_s_error"] / a, denominator["ess_per_s_error"] / b)
    return {"ratio": ratio, "error": ratio * relative}


#: Blocks of the parallel-tempering reference's block error (as ``reference.analyze_reference``).
TEMPERING_BLOCKS = 10


def _tempering_population(indicator: np.ndarray) -> dict:
    """Population with the larger of its ESS and block errors, as the reference quotes it: the
    tempering run's indicator is rarely long enough for either alone to be trusted."""
    record = population_record([indicator])
    if len(indicator) >= 2 * TEMPERING_BLOCKS:
        blocks = metrics.block_standard_error(indicator, TEMPERING_BLOCKS)
        record["error"] = max(record["error"], blocks)
    return record


def compare_with_tempering(run, source: str, samplers: dict, plot_data: dict) -> dict:
    """The 310 K state of a parallel-tempering run against every sampler (dipeptides only).

    Adds ``vs_parallel_tempering`` to each sampler's record: the Ramachandran JSD and, for every
    basin and for phi > 0, the deviation in units of the combined error.
    """
    phi, psi = run.phi_by_state[:, 0], run.psi_by_state[:, 0]
    if any(angles[0].shape[1] != 1 for data in plot_data.values() for angles in data["angles"]):
        raise ValueError("the parallel-tempering reference applies to a dipeptide only")
    labels = metrics.ramachandran_states(phi, psi)
    histogram = metrics.histogram_2d(
        phi, psi, RAMACHANDRAN_BINS, [[-math.pi, math.pi], [-math.pi, math.pi]]
    )
    half = len(phi) // 2
    halves = [
        metrics.histogram_2d(
            phi[part], psi[part], RAMACHANDRAN_BINS, [[-math.pi, math.pi], [-math.pi, math.pi]]
        )
        for part in (slice(None, half), slice(half, None))
    ]
    summary = {
        "source": source,
        "iterations": run.iterations,
        "frames_at_target_temperature": len(phi),
        "state_populations": state_populations([labels], metrics.RAMACHANDRAN_STATES),
        "phi_positive": _tempering_population(phi > 0),
        "jsd_ramachandran_halves": metrics.jensen_shannon_divergence(*halves),
    }

    def deviation(record: dict, target: dict) -> float:
        spread = math.hypot(record["error"], target["error"])
        return (record["population"] - target["population"]) / max(spread, 1e-12)

    for name, result in samplers.items():
        trajectories_angles = plot_data[name]["angles"]
        sampler_histogram = metrics.histogram_2d(
            np.concatenate([a[0][:, 0] for a in trajectories_angles]),
            np.concatenate([a[1][:, 0] for a in trajectories_angles]),
            RAMACHANDRAN_BINS,
            [[-math.pi, math.pi], [-math.pi, math.pi]],
        )
        result["vs_parallel_tempering"] = {
            "jsd_ramachandran": metrics.jensen_shannon_divergence(sampler_histogram, histogram),
            "state_population_deviation_sigma": {
                state: deviation(result["state_populations"][state], target)
                for state, target in summary["state_populations"].items()
            },
            "phi_positive_deviation_sigma": deviation(
                result["phi_positive"], summary["phi_positive"]
            ),
        }
    return summary


def sampler_ratios(samplers: dict) -> dict:
    ratios = {}
    if TIMEWARP not in samplers:
        return ratios
    timewarp = samplers[TIMEWARP]["ess"]
    for baseline in MD_PROTOCOLS:
        if baseline in samplers:
            md = samplers[baseline]["ess"]
            ratios[f"{TIMEWARP}/{baseline}"] = {
                key: ess_ratio(timewarp[key], md[key])
                for key in timewarp
                if timewarp[key]["ess_per_s"] > 0 and md[key]["ess_per_s"] > 0
            }
    return ratios


def fastest_md_baselines(samplers: dict) -> dict:
    """Per coordinate, the MD baseline with the highest ESS per second, and Timewarp's ratio to it.

    Each record holds the baseline's name, its ESS/s with error and whether its Sokal window
    closed (``reliable``); when Timewarp ran, ``ratio`` and ``error`` as in :func:`ess_ratio`.
    """
    baselines = [name for name in MD_PROTOCOLS if name in samplers]
    if not baselines:
        return {}
    timewarp = samplers[TIMEWARP]["ess"] if TIMEWARP in samplers else {}
    fastest = {}
    for key in samplers[baselines[0]]["ess"]:
        name = max(baselines, key=lambda baseline: samplers[baseline]["ess"][key]["ess_per_s"])
        md = samplers[name]["ess"][key]
        record = {
            "baseline": name,
            "ess_per_s": md["ess_per_s"],
            "ess_per_s_error": md["ess_per_s_error"],
            "reliable": md["reliable"],
        }
        if key in timewarp and timewarp[key]["ess_per_s"] > 0 and md["ess_per_s"] > 0:
            record.update(ess_ratio(timewarp[key], md))
        fastest[key] = record
    return fastest


def discovery_speedups(samplers: dict, settings: BenchmarkSettings) -> dict:
    """MD's time to find every state over each Timewarp sampler's; a lower bound if MD never did."""
    speedups = {}
    for fast in (TIMEWARP, EXPLORATION):
        for slow in MD_PROTOCOLS:
            if fast not in samplers or slow not in samplers:
                continue
            t_fast = samplers[fast]["median_time_to_all_states_s"]
            t_slow = samplers[slow]["median_time_to_all_states_s"]
            if t_fast is None:
                record = {"speedup": None, "note": f"{fast} did not find every state"}
            elif t_slow is None:
                bound = settings.budget_s / settings.num_starts / max(t_fast, 1e-9)
                record = {"speedup": bound, "lower_bound": True}
            else:
                record = {"speedup": t_slow / max(t_fast, 1e-9), "lower_bound": False}
            speedups[f"{fast}/{slow}"] = record
    return speedups


def state_population_deviations(report: dict) -> dict[str, float]:
    """(MH population - reference population) / combined standard error, for every state."""
    reference = report["reference"]["state_populations"]
    mh = report["samplers"][TIMEWARP]["state_populations"]
    return {
        name: (mh[name]["population"] - ref["population"])
        / max(math.hypot(mh[name]["error"], ref["error"]), 1e-12)
        for name, ref in reference.items()
    }
