"""Arithmetic and table of the held-out evaluation (:mod:`openmm_timewarp.evaluation.heldout`).

- Backbone basins per residue (:func:`basin_labels`): a residue with both phi and psi has the four
  Ramachandran basins of :data:`~openmm_timewarp.evaluation.metrics.RAMACHANDRAN_STATES` (phi > 0
  included: alphaL and C7ax); a terminal residue of a zwitterion has only one of the two, so it has
  two basins: ``phi+`` (0 < phi < 120 degrees, as the left-handed region there) or ``phi-`` for
  phi alone, ``alpha`` (-120 <= psi < 50 degrees) or ``beta`` for psi alone. A state of the
  peptide is the combination of its residues' basins (:func:`combined_states`).
- ESS/s ratios (:func:`rate_ratio`): Timewarp's over MD's (MD's long run at the wall time per ns
  timed beside Timewarp, :mod:`~openmm_timewarp.evaluation.md_timing`), the relative errors added in
  quadrature; ``trusted`` only where MD's run is long enough (20 integrated autocorrelation times,
  window closed), Timewarp's window closed, and each run visited every region of the coordinate
  that the reference runs populate (``covers_reference``): a run confined to one basin measures
  the motion within it, not the slow process it never made.
- Exploration (:func:`exploration_ratio`): MD's time to visit every reference state over
  Timewarp's, censored where one of them never got there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from openmm_timewarp.evaluation import metrics
from openmm_timewarp.evaluation.comparisons import ess_ratio

PHI_ONLY_BASINS = ("phi-", "phi+")
PSI_ONLY_BASINS = ("beta", "alpha")
#: The share of normal deviations within 2 sigma: what an exact sampler's basins give.
EXACT_WITHIN_2_SIGMA = math.erf(2 / math.sqrt(2))


def basin_labels(
    phi: np.ndarray | None, psi: np.ndarray | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Basin index of each frame of one residue (radians; None where the angle is undefined),
    and the basins' names."""
    if phi is not None and psi is not None:
        return metrics.ramachandran_states(phi, psi), metrics.RAMACHANDRAN_STATES
    if phi is not None:
        degrees = np.degrees(np.asarray(phi, dtype=float))
        return ((degrees > 0) & (degrees < 120)).astype(np.int64), PHI_ONLY_BASINS
    if psi is not None:
        degrees = np.degrees(np.asarray(psi, dtype=float))
        return ((degrees >= -120) & (degrees < 50)).astype(np.int64), PSI_ONLY_BASINS
    raise ValueError("a residue needs phi or psi for a backbone basin")


def combined_states(labels: Sequence[np.ndarray], names: Sequence[Sequence[str]]) -> list[str]:
    """Each frame's state: its residues' basin names joined by ``/`` (first residue first)."""
    columns = [np.asarray(names[r])[labels[r]] for r in range(len(labels))]
    return ["/".join(row) for row in zip(*columns, strict=True)]


def population(indicators: Sequence[np.ndarray], fallback_ess: float | None = None) -> dict:
    """Population with its error from the ESS of the indicator.

    An indicator that never changes has no autocorrelation to measure: its ESS is then
    ``fallback_ess`` (that of the residue's dihedrals), and a population never (or always)
    observed gets the error of one effective sample, so an unvisited basin is not claimed to be
    exactly empty, nor to be anything a run of that length cannot tell.

    Otherwise the ESS is the smaller of the indicator's own (Sokal's window) and
    :func:`switching_ess`: the window of a chain that crossed a barrier only a few times closes
    on the motion within a basin (two-state chains that switched twice: errors 0.43 times the
    spread of their populations, tests/test_basin_population_errors.py).
    """
    chains = [np.asarray(i, dtype=bool) for i in indicators]
    values = np.concatenate(chains)
    p = float(values.mean())
    switches = sum(int(np.count_nonzero(c[1:] != c[:-1])) for c in chains)
    if values.min() == values.max():
        ess = 1.0 if fallback_ess is None else float(fallback_ess)
    else:
        ess = min(
            metrics.integrated_autocorrelation_time([c.astype(float) for c in chains]).ess,
            switching_ess(p, switches + len(chains) - 1, len(values)),
        )
    return {"population": p, "error": binomial_error(p, ess), "ess": ess, "switches": switches}


def switching_ess(p: float, switches: int, frames: int) -> float:
    """The ESS of the time in a state of population ``p`` that a two-state Markov chain gives
    after ``switches`` switches in ``frames`` frames: its switching probabilities sum to
    ``s = switches / (2 frames p (1 - p))`` and its ESS is ``frames s / (2 - s)`` (about
    ``switches / (4 p (1 - p))`` where switches are rare); infinite where ``s >= 1``, switching
    faster than uncorrelated frames. Basins cut at fixed angles count recrossings of a barrier
    top and brief excursions as switches too, so this bounds the ESS only where a chain crossed
    cleanly and rarely; a process slower than the chain that shows as brief excursions needs
    independent chains. Pooled chains count one switch per chain after the first (their
    different starts)."""
    rate = switches / (2.0 * frames * p * (1.0 - p))
    return frames * rate / (2.0 - rate) if rate < 1.0 else math.inf


def first_visit_of_all(
    states: np.ndarray, times: np.ndarray, wanted: Sequence[str]
) -> float | None:
    """The time by which a chain of ``states`` recorded at ``times`` had visited every state in
    ``wanted``; None where it never visited one."""
    latest = 0.0
    for state in wanted:
        visits = np.flatnonzero(states == state)
        if not len(visits):
            return None
        latest = max(latest, float(times[visits[0]]))
    return latest


def binomial_error(p: float, ess: float) -> float:
    """Standard error of a population ``p`` from ``ess`` effective samples, never below that of a
    population of one effective sample (a rare basin seen a few times is not known to 1/ess)."""
    floor = min(max(p, 1.0 / ess), 1.0 - 1.0 / ess) if ess > 2 else 0.5
    return math.sqrt(max(floor * (1.0 - floor), p * (1.0 - p)) / ess)


def population_deviation(sampled: dict, reference: dict) -> dict:
    """Deviation of a sampled population from the reference's in combined standard errors."""
    spread = math.hypot(sampled["error"], reference["error"])
    sigma = (sampled["population"] - reference["population"]) / spread
    return {
        "population": sampled["population"],
        "error": sampled["error"],
        "reference": reference["population"],
        "reference_error": reference["error"],
        "sigma": sigma,
        "within_2_sigma": abs(sigma) <= 2.0,
    }


def rate_ratio(timewarp: dict, md: dict) -> dict:
    """Timewarp's ESS/s over MD's on one coordinate, with the propagated error.

    ``md`` is a long-run record (:func:`~openmm_timewarp.evaluation.md_rates.mark_long_enough`);
    the ratio is ``trusted`` only where MD's run is long enough, Timewarp's window closed and both
    runs cover the reference's range of the coordinate (a record without ``covers_reference``,
    read back from before the check, counts as not checked: ``None``).
    """
    record = {
        "timewarp_ess_per_s": timewarp["ess_per_s"],
        "timewarp_ess_per_s_error": timewarp["ess_per_s_error"],
        "timewarp_window_closed": bool(timewarp["window_closed"]),
        "md_ess_per_s": md["ess_per_s"],
        "md_ess_per_s_error": md["ess_per_s_error"],
        "md_tau_int_ps": md["tau_int_ps"],
        "md_autocorrelation_times": md["autocorrelation_times"],
        "md_long_enough": bool(md["long_enough"]),
        "md_covers_reference": md.get("covers_reference"),
        "md_missed_reference_mass": md.get("missed_reference_mass"),
        "timewarp_covers_reference": timewarp.get("covers_reference"),
        "timewarp_missed_reference_mass": timewarp.get("missed_reference_mass"),
        "ratio": None,
        "error": None,
    }
    if timewarp["ess_per_s"] > 0 and md["ess_per_s"] > 0:
        record.update(ess_ratio(timewarp, md))
    record["trusted"] = bool(
        record["ratio"] is not None
        and record["md_long_enough"]
        and record["timewarp_window_closed"]
        and record["md_covers_reference"] is not False
        and record["timewarp_covers_reference"] is not False
    )
    return record


def exploration_ratio(
    timewarp_s: float | None,
    timewarp_wall_s: float,
    md_s: float | None,
    md_wall_s: float,
    num_states: int,
) -> dict:
    """MD's wall time to visit every one of ``num_states`` states over Timewarp's.

    Where only Timewarp got there, MD's run length bounds the ratio from below; where only MD did,
    Timewarp's run length bounds it from above; where neither did, or there is only the state both
    start in, there is no ratio.
    """
    if num_states < 2:
        return {"ratio": None, "bound": None}
    if timewarp_s is not None and md_s is not None:
        return {"ratio": md_s / max(timewarp_s, 1e-9), "bound": None}
    if timewarp_s is not None:
        return {"ratio": md_wall_s / max(timewarp_s, 1e-9), "bound": "lower"}
    if md_s is not None:
        return {"ratio": md_s / timewarp_wall_s, "bound": "upper"}
    return {"ratio": None, "bound": None}


def spread(values: Sequence[float | None]) -> str:
    """Median, quartiles and range of the finite values, and how many there are."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not len(finite):
        return "none"
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return (
        f"{median:.3g} ({q1:.3g}-{q3:.3g}; {finite.min():.3g}-{finite.max():.3g}; n={len(finite)})"
    )


def _ratio_text(record: dict) -> str:
    marks = (
        ("" if record["md_long_enough"] else "†")
        + ("" if record["timewarp_window_closed"] else "‡")
        + ("" if record.get("md_covers_reference") is not False else "§")
        + ("" if record.get("timewarp_covers_reference") is not False else "¶")
    )
    if record["ratio"] is None:
        return f"- {marks}"
    return (
        f"{record['timewarp_ess_per_s']:.3g} / {record['md_ess_per_s']:.3g} "
        f"({record['ratio']:.3g} ± {record['error']:.2g}x){marks}"
    )


def _ratio_bound_text(ratio: dict) -> str:
    if ratio["ratio"] is None:
        return "-"
    sign = {"lower": ">= ", "upper": "<= ", None: ""}[ratio["bound"]]
    return f"{sign}{ratio['ratio']:.3g}x"


def _exploration_text(record: dict) -> str:
    times = " / ".join("never" if t is None else f"{t:.3g}" for t in record["times_s"])
    return f"{times} ({_ratio_bound_text(record['ratio'])})"


def _exploration_mode_text(record: dict | None) -> str:
    if record is None:
        return "not run"
    found = "never" if record["time_s"] is None else f"{record['time_s']:.3g}"
    return f"{found} ({_ratio_bound_text(record['ratio'])})"


def _basins_text(result: dict) -> str:
    basins = result["basins"]
    within = sum(record["within_2_sigma"] for record in basins.values())
    worst = max(basins, key=lambda name: abs(basins[name]["sigma"]))
    return f"{within}/{len(basins)} (worst {worst} {basins[worst]['sigma']:+.2g})"


def table(results: Sequence[dict]) -> str:
    """A markdown table, one row per peptide result, medians with their spread in a last row."""
    lines = [
        "| peptide | atoms | acceptance | slowest backbone dihedral (MD's) | ESS/s Timewarp / MD "
        "(ratio) | MD tau_int ps (run in tau_int) | TIC0 ESS/s Timewarp / MD (ratio) | basins "
        "within 2 sigma | all states found, s: Timewarp / MD (ratio) | exploration mode: all "
        "states found, s (ratio to MD) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        slowest, tic0 = result["ratios"]["slowest_dihedral"], result["ratios"]["tic0"]
        untimed = "" if "timing" in result["md"] else "◊"
        lines.append(
            f"| {result['sequence']} ({result['termini']}){untimed} | {result['atoms']} | "
            f"{result['acceptance']:.3f} | {result['slowest_dihedral']} | {_ratio_text(slowest)} | "
            f"{slowest['md_tau_int_ps']:.3g} ({slowest['md_autocorrelation_times']:.3g}) | "
            f"{_ratio_text(tic0)} | {_basins_text(result)} | "
            f"{_exploration_text(result['exploration'])} ({len(result['states'])} states) | "
            f"{_exploration_mode_text(result.get('exploration_mode'))} |"
        )

    def trusted(key: str) -> list[float | None]:
        return [r["ratios"][key]["ratio"] for r in results if r["ratios"][key]["trusted"]]

    exploration = [r["exploration"]["ratio"]["ratio"] for r in results]
    exploration_mode = [
        r["exploration_mode"]["ratio"]["ratio"] for r in results if r.get("exploration_mode")
    ]
    basins = [b["within_2_sigma"] for r in results for b in r["basins"].values()]
    lines.append(
        f"| median (quartiles; range; n) | | {spread([r['acceptance'] for r in results])} | | "
        f"{spread(trusted('slowest_dihedral'))} | | {spread(trusted('tic0'))} | "
        f"{sum(all(b['within_2_sigma'] for b in r['basins'].values()) for r in results)} of "
        f"{len(results)} peptides all within; {sum(basins)} of {len(basins)} basins (exact: "
        f"{EXACT_WITHIN_2_SIGMA * len(basins):.3g}) | {spread(exploration)} | "
        f"{spread(exploration_mode)} |"
    )
    lines += [
        "",
        "Ratios are ESS per wall second of Timewarp (MH) over MD's on the same coordinate, "
        "with errors propagated from both; MD's is its long run's ESS per simulated ns at the "
        "wall time per ns of the same MD timed right before and after Timewarp, in the same "
        "process (◊: a result from before that timing, at the long run's own average wall "
        "time, taken hours from Timewarp's). † MD's run is shorter than 20 integrated "
        "autocorrelation times or its window did not close: its rate is not used (no median). "
        "‡ Timewarp's window did not close (its ESS an upper bound): not used in the median. "
        "§ MD's run (¶ Timewarp's) never visited bins of the coordinate holding >= "
        f"{metrics.MAX_MISSED_MASS:.0%} of the reference runs' frames: its rate is the motion "
        "within the part it sampled, not the slow process between the parts; not used in the "
        "median. "
        "Exploration: >= where MD never visited every state (its run length used), <= where "
        "Timewarp never did; the exploration median takes such bounds at their value. Basins: "
        "Timewarp's populations against the reference runs and MD's long run pooled; an exact "
        f"sampler puts {EXACT_WITHIN_2_SIGMA:.1%} of them within 2 sigma (the expected count "
        "in brackets), so a peptide of many basins misses one by chance alone.",
    ]
    return "\n".join(lines)
