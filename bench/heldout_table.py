"""One table of `timewarp benchmark` reports on held-out peptides, with the spread of the ratios.

    python bench/heldout_table.py runs/heldout/IN runs/heldout/NY ...

Each folder is a `timewarp benchmark` output (report.json) with the samplers timewarp,
timewarp-exploration and md-2fs-hbonds. Per peptide: MH acceptance; ESS per second of TIC0 and of
the slowest backbone dihedral (the one with the lowest ESS/s for that sampler) for MH and MD, and
their ratios; the time each sampler took to visit every reference state and the exploration
speed-up over MD; the MH Ramachandran Jensen-Shannon divergence against the reference (with the
reference's own half-to-half value, its finite-sample floor) and the largest deviation of an MH
state population from the reference's in standard errors. Below the table: median, quartiles,
minimum and maximum of each ratio over the peptides.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from openmm_timewarp.benchmark import (
    EXPLORATION,
    MD_PRACTICAL,
    TIMEWARP,
    state_population_deviations,
)


def slowest_dihedral(sampler: dict) -> tuple[str, float]:
    dihedrals = {k: v["ess_per_s"] for k, v in sampler["ess"].items() if k != "tic0"}
    name = min(dihedrals, key=dihedrals.get)
    return name, dihedrals[name]


def _time(sampler: dict) -> str:
    value = sampler["median_time_to_all_states_s"]
    return "not all" if value is None else f"{value:.3g}"


def row(report: dict) -> dict:
    samplers = report["samplers"]
    mh, md = samplers[TIMEWARP], samplers[MD_PRACTICAL]
    dihedral_mh, ess_mh = slowest_dihedral(mh)
    dihedral_md, ess_md = slowest_dihedral(md)
    speedup = report["discovery_speedups"][f"{EXPLORATION}/{MD_PRACTICAL}"]
    deviations = state_population_deviations(report)
    worst = max(deviations, key=lambda name: abs(deviations[name]))
    return {
        "sequence": report["peptide"]["sequence"],
        "atoms": report["peptide"]["atoms"],
        "acceptance": mh["acceptance"],
        "ess_tic0": (mh["ess"]["tic0"]["ess_per_s"], md["ess"]["tic0"]["ess_per_s"]),
        "ratio_tic0": report["ratios"][f"{TIMEWARP}/{MD_PRACTICAL}"]["tic0"]["ratio"],
        "ess_dihedral": (ess_mh, dihedral_mh, ess_md, dihedral_md),
        "ratio_dihedral": ess_mh / ess_md if ess_md > 0 else math.inf,
        "discovery": (_time(mh), _time(samplers[EXPLORATION]), _time(md)),
        "speedup": speedup.get("speedup"),
        "speedup_bound": bool(speedup.get("lower_bound")),
        "jsd": (mh["jsd_ramachandran"], report["reference"]["jsd_ramachandran_halves"]),
        "states": len(report["reference"]["states_to_discover"]),
        "deviation": (worst, deviations[worst]),
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
        "| peptide | atoms | MH acceptance | ESS/s TIC0 MH / MD (ratio) | ESS/s slowest dihedral "
        "MH / MD (ratio) | all states found, s: MH / exploration / MD | exploration speed-up | "
        "JSD Ramachandran MH (reference halves) | largest state deviation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tic_mh, tic_md = r["ess_tic0"]
        ess_mh, name_mh, ess_md, name_md = r["ess_dihedral"]
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.3g}x"
        if r["speedup_bound"]:
            speedup = f">= {speedup}"
        state, sigma = r["deviation"]
        lines.append(
            f"| {r['sequence']} | {r['atoms']} | {r['acceptance']:.3f} | "
            f"{tic_mh:.3g} / {tic_md:.3g} ({r['ratio_tic0']:.3g}x) | "
            f"{ess_mh:.3g} ({name_mh}) / {ess_md:.3g} ({name_md}) ({r['ratio_dihedral']:.3g}x) | "
            f"{' / '.join(r['discovery'])} ({r['states']} states) | {speedup} | "
            f"{r['jsd'][0]:.3f} ({r['jsd'][1]:.3f}) | {state} {sigma:+.2g} sigma |"
        )
    lines += [
        "",
        f"- ESS/s ratio MH / md-2fs-hbonds, TIC0: {spread([r['ratio_tic0'] for r in rows])}",
        f"- ESS/s ratio MH / md-2fs-hbonds, slowest dihedral: "
        f"{spread([r['ratio_dihedral'] for r in rows])}",
        f"- exploration speed-up in finding every state: {spread([r['speedup'] for r in rows])}"
        f" ({sum(r['speedup_bound'] for r in rows)} lower bounds: MD never found every state)",
        f"- MH acceptance: {spread([r['acceptance'] for r in rows])}",
        f"- state populations within 2 sigma of the reference: "
        f"{sum(abs(r['deviation'][1]) <= 2 for r in rows)} of {len(rows)} peptides",
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
