"""One table of `timewarp benchmark` reports on held-out peptides, with the spread of the ratios.

    python bench/heldout_table.py runs/heldout/IN runs/heldout/NY ...

Each folder is a `timewarp benchmark` output (report.json) with the samplers timewarp,
timewarp-exploration and md-2fs-hbonds. Per peptide: MH acceptance; ESS per second of TIC0 and of
MD's slowest backbone dihedral (the one with the lowest ESS/s in the MD run) for MH and MD, and
their ratios (both samplers on the same coordinate); a dagger marks an MD estimate whose Sokal
window did not close or whose run is shorter than 50 integrated autocorrelation times (its ESS is
then an upper bound, and the ratio a lower bound); the time each sampler took to visit every
reference state and the exploration speed-up over MD; the MH Ramachandran Jensen-Shannon divergence
against the reference (with the reference's own half-to-half value, its finite-sample floor) and
the largest deviation of an MH state population from the reference's in standard errors, over all
states and over the states the reference visited (the MH populations renormalised to them: a
reference that never entered a state, population 0 +- 0, cannot tell its population, and what MH
puts there is missing from the others). Below the table: median, quartiles, minimum and maximum of
each ratio over the peptides.

Where md-2fs-hbonds does not find every state within the budget, its discovery time is also
estimated from the reference: the reference trajectories are the same MD protocol (LangevinMiddle,
2 fs, bonds to hydrogen constrained, 0.3/ps), so the simulated time at which the one started in the
beta basin (where the benchmark's MD starts) had visited every state, divided by the MD speed the
benchmark measured (ps per wall second), is the wall time MD would have needed here; if that
trajectory never visits every state, its length gives a lower bound.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import mdtraj
import numpy as np

from openmm_timewarp.evaluation import metrics
from openmm_timewarp.evaluation.comparisons import state_population_deviations
from openmm_timewarp.evaluation.settings import EXPLORATION, MD_PRACTICAL, TIMEWARP


def slowest_dihedral(sampler: dict) -> str:
    dihedrals = {k: v["ess_per_s"] for k, v in sampler["ess"].items() if k != "tic0"}
    return min(dihedrals, key=dihedrals.get)


def _unreliable(record: dict) -> str:
    """A dagger where the Sokal estimate is not reliable (ESS an upper bound)."""
    return "" if record.get("reliable", True) else " \u2020"


def _time(sampler: dict) -> str:
    value = sampler["median_time_to_all_states_s"]
    return "not all" if value is None else f"{value:.3g}"


def deviation_within_reference_states(report: dict) -> tuple[str, float]:
    """The largest deviation (standard errors) of an MH state population from the reference's,
    over the states the reference visited, MH populations (and errors) renormalised to them."""
    reference = report["reference"]["state_populations"]
    mh = report["samplers"][TIMEWARP]["state_populations"]
    visited = [name for name, record in reference.items() if record["population"] > 0]
    total = sum(mh[name]["population"] for name in visited)
    deviations = {
        name: (mh[name]["population"] / total - reference[name]["population"])
        / max(math.hypot(mh[name]["error"] / total, reference[name]["error"]), 1e-12)
        for name in visited
    }
    worst = max(deviations, key=lambda name: abs(deviations[name]))
    return worst, deviations[worst]


def md_discovery_from_reference(report: dict) -> tuple[float, bool]:
    """Wall seconds md-2fs-hbonds would take to visit every state, from the reference trajectory
    started in beta, and whether that is a lower bound (the trajectory never visited them all)."""
    from openmm_timewarp.data.datasets import list_trajectories

    names = list(metrics.RAMACHANDRAN_STATES)
    wanted = {names.index(state) for state in report["reference"]["states_to_discover"]}
    runs = [
        r for r in list_trajectories(report["reference"]["source"]) if "beta" in r.directory.name
    ]
    if len(runs) != 1:
        raise ValueError(f"{report['reference']['source']} has no single trajectory from beta")
    run = runs[0]
    trajectory = mdtraj.Trajectory(run.load(), mdtraj.Topology.from_openmm(run.topology()))
    phi, psi = metrics.backbone_dihedrals(trajectory)
    labels = metrics.ramachandran_states(phi[:, 0], psi[:, 0])
    first = [
        int(np.argmax(labels == state)) if (labels == state).any() else None for state in wanted
    ]
    md = report["samplers"][MD_PRACTICAL]
    ps_per_wall_s = md["frames"] * report["settings"]["md_frame_interval_ps"] / md["wall_s"]
    if None in first:
        return run.num_frames * run.frame_interval_ps / ps_per_wall_s, True
    return (max(first) + 1) * run.frame_interval_ps / ps_per_wall_s, False


def row(report: dict) -> dict:
    samplers = report["samplers"]
    mh, md = samplers[TIMEWARP], samplers[MD_PRACTICAL]
    dihedral = slowest_dihedral(md)
    ess_mh, ess_md = mh["ess"][dihedral]["ess_per_s"], md["ess"][dihedral]["ess_per_s"]
    speedup = report["discovery_speedups"][f"{EXPLORATION}/{MD_PRACTICAL}"]
    exploration_s = samplers[EXPLORATION]["median_time_to_all_states_s"]
    md_estimate_s, md_estimate_bound = md_discovery_from_reference(report)
    deviations = state_population_deviations(report)
    worst = max(deviations, key=lambda name: abs(deviations[name]))
    return {
        "sequence": report["peptide"]["sequence"],
        "atoms": report["peptide"]["atoms"],
        "acceptance": mh["acceptance"],
        "ess_tic0": (mh["ess"]["tic0"]["ess_per_s"], md["ess"]["tic0"]["ess_per_s"]),
        "md_unreliable": (_unreliable(md["ess"]["tic0"]), _unreliable(md["ess"][dihedral])),
        "md_crossed": md["median_time_to_all_states_s"] is not None,
        "ratio_tic0": report["ratios"][f"{TIMEWARP}/{MD_PRACTICAL}"]["tic0"]["ratio"],
        "ess_dihedral": (ess_mh, ess_md, dihedral),
        "ratio_dihedral": ess_mh / ess_md if ess_md > 0 else math.inf,
        "discovery": (_time(mh), _time(samplers[EXPLORATION]), _time(md)),
        "speedup": speedup.get("speedup"),
        "speedup_bound": bool(speedup.get("lower_bound")),
        "md_estimate": (md_estimate_s, md_estimate_bound),
        "speedup_estimate": None if exploration_s is None else md_estimate_s / exploration_s,
        "jsd": (mh["jsd_ramachandran"], report["reference"]["jsd_ramachandran_halves"]),
        "states": len(report["reference"]["states_to_discover"]),
        "deviation": (worst, deviations[worst]),
        "deviation_visited": deviation_within_reference_states(report),
    }


def spread(values: list[float]) -> str:
    finite = np.array([v for v in values if v is not None and math.isfinite(v)])
    if not len(finite):
        return "none"
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return (
        f"median {median:.3g}, quartiles {q1:.3g} - {q3:.3g}, range {finite.min():.3g} - "
        f"{finite.max():.3g} ({len(finite)} peptides)"
    )


def table(rows: list[dict]) -> str:
    lines = [
        "| peptide | atoms | MH acceptance | ESS/s TIC0 MH / MD (ratio) | ESS/s of MD's slowest "
        "dihedral, MH / MD (ratio) | all states found, s: MH / exploration / MD | "
        "exploration speed-up | MD from the reference, s (exploration speed-up) | "
        "JSD Ramachandran MH (reference halves) | largest state deviation: all states / "
        "states the reference visited |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tic_mh, tic_md = r["ess_tic0"]
        star = "" if r["md_crossed"] else " *"
        ess_mh, ess_md, dihedral = r["ess_dihedral"]
        dagger_tic0, dagger_dihedral = r["md_unreliable"]
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.3g}x"
        if r["speedup_bound"]:
            speedup = f">= {speedup}"
        state, sigma = r["deviation"]
        visited_state, visited_sigma = r["deviation_visited"]
        estimate_s, estimate_bound = r["md_estimate"]
        bound = ">= " if estimate_bound else ""
        estimate = f"{bound}{estimate_s:.3g}"
        if r["speedup_estimate"] is not None:
            estimate += f" ({bound}{r['speedup_estimate']:.3g}x)"
        lines.append(
            f"| {r['sequence']} | {r['atoms']} | {r['acceptance']:.3f} | "
            f"{tic_mh:.3g} / {tic_md:.3g}{star}{dagger_tic0} ({r['ratio_tic0']:.3g}x) | "
            f"{dihedral}: {ess_mh:.3g} / {ess_md:.3g}{star}{dagger_dihedral} "
            f"({r['ratio_dihedral']:.3g}x) | "
            f"{' / '.join(r['discovery'])} ({r['states']} states) | {speedup} | {estimate} | "
            f"{r['jsd'][0]:.3f} ({r['jsd'][1]:.3f}) | {state} {sigma:+.2g} sigma / "
            f"{visited_state} {visited_sigma:+.2g} sigma |"
        )
    lines += [
        "",
        "\\* MD did not visit every state within the budget: its ESS measures motion within the "
        "states it visited and over-estimates its ESS for the slow process, so these ratios "
        "understate the speed-up.",
        "\u2020 MD's Sokal window did not close, or its run is shorter than 50 integrated "
        "autocorrelation times: its ESS is an upper bound, so the ratio is a lower bound.",
        "",
        f"- ESS/s ratio MH / md-2fs-hbonds, TIC0: {spread([r['ratio_tic0'] for r in rows])}",
        f"- ESS/s ratio MH / md-2fs-hbonds, MD's slowest dihedral: "
        f"{spread([r['ratio_dihedral'] for r in rows])}",
        f"- exploration speed-up in finding every state: {spread([r['speedup'] for r in rows])}"
        f" ({sum(r['speedup_bound'] for r in rows)} lower bounds: MD never found every state)",
        f"- the same with MD's time from the reference: "
        f"{spread([r['speedup_estimate'] for r in rows])} "
        f"({sum(r['md_estimate'][1] for r in rows)} lower bounds)",
        f"- MH acceptance: {spread([r['acceptance'] for r in rows])}",
        f"- state populations within 2 sigma of the reference: "
        f"{sum(abs(r['deviation'][1]) <= 2 for r in rows)} of {len(rows)} peptides; over the "
        f"states the reference visited: "
        f"{sum(abs(r['deviation_visited'][1]) <= 2 for r in rows)} of {len(rows)}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="timewarp benchmark output folders")
    args = parser.parse_args()
    rows = []
    for folder in args.reports:
        path = folder / "report.json"
        if not path.is_file():
            raise SystemExit(f"{folder} has no report.json: run `timewarp benchmark` there first")
        rows.append(row(json.loads(path.read_text())))
    print(table(rows))


if __name__ == "__main__":
    main()
