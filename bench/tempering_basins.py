"""Every backbone basin of held-out peptides: `timewarp heldout` results against tempering.

    python bench/tempering_basins.py PYGK YSKC --heldout runs/tetra-r1 --tempering-cpu 1800 \
        -o runs/tempering

The held-out table tests Timewarp's basin populations against the reference runs and MD's long
run together (:mod:`openmm_timewarp.evaluation.heldout_basins`); a basin that MD enters a handful
of times in 50 ns (a C-terminal phi > 0) is then decided by those few entries. Parallel tempering
(the reference protocol of :mod:`openmm_timewarp.evaluation.reference`) is a third sampler of the
same Boltzmann distribution that crosses such barriers at the hot replicas. For
each SEQUENCE this script runs it in OUTPUT/SEQUENCE (or continues that run, for
``--tempering-cpu`` more CPU seconds; 0 only reads it), takes every residue's basin populations
at 310 K from the frames of all its temperatures, reweighted by MBAR
(:mod:`openmm_timewarp.evaluation.reference_reweighting`; the 310 K frames alone, with the table's
errors, are printed beside them), and prints each basin's Timewarp, tempering and MD + references
populations with the deviations in combined standard errors (OUTPUT/SEQUENCE/basins.json keeps
them). Over all the peptides in OUTPUT it then writes
OUTPUT/basins.md (a row per peptide, totals against the 95.4% of basins an exact sampler puts
within 2 sigma) and OUTPUT/basins.png (every basin's deviation, both samplers).

``--heldout`` is a `timewarp heldout` folder holding SEQUENCE-TERMINI/result.json, or a
`timewarp heldout-table` folder (its sources.json names the folder of each peptide's row).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmm_timewarp.evaluation import (
    heldout_basins,
    heldout_table,
    reference,
    reference_reweighting,
)
from openmm_timewarp.evaluation.heldout import RESULT_FILE
from openmm_timewarp.evaluation.heldout_merge import SOURCES_FILE

BASINS_FILE = "basins.json"


def heldout_result(folder: Path, sequence: str, termini: str) -> dict:
    """The peptide's result.json in a heldout folder, or in the folder a merged table names."""
    name = f"{sequence}-{termini}"
    sources = folder / SOURCES_FILE
    if not (folder / name / RESULT_FILE).is_file() and sources.is_file():
        folder = Path(json.loads(sources.read_text()).get(sequence, folder))
    path = folder / name / RESULT_FILE
    if not path.is_file():
        raise SystemExit(f"no {name}/{RESULT_FILE} in {folder}: run `timewarp heldout` first")
    return json.loads(path.read_text())


def run_tempering(output: Path, sequence: str, termini: str, cpu_s: float) -> int:
    """Run or continue the reference protocol in ``output`` for ``cpu_s`` more CPU seconds."""
    peptide_file = output / reference.PEPTIDE_NAME
    if peptide_file.exists():
        stored = json.loads(peptide_file.read_text())
        if (stored.get("sequence"), stored.get("termini")) != (sequence, termini):
            raise SystemExit(f"{output} holds a run of {stored.get('sequence')}, not {sequence}")
    return reference.run_reference(
        output,
        iterations=10**7,  # the CPU budget ends the run
        sequence=sequence,
        termini=termini,
        cpu_budget_s=cpu_s,
        chunk=10,
    )


def compare(result: dict, run: Path, sequence: str, termini: str) -> dict:
    """Every basin of ``result`` against the tempering run's populations at 310 K (all its
    temperatures reweighted), printed and returned."""
    replica_frames = reference.read_replica_frames(run, discard_fraction=0.1)
    at_310K = replica_frames.at_state(0)
    _, from_310K = heldout_basins.states_and_basins([at_310K])
    tempering, frames = reference_reweighting.reweighted_basins(replica_frames)
    rows = {}
    print(f"{sequence}: {frames} tempering frames, {at_310K.n_frames} of them at 310 K")
    print(
        "| basin | Timewarp | tempering, all temperatures | sigma | tempering, 310 K frames only "
        "| MD + references | sigma |"
    )
    print("|---|---|---|---|---|---|---|")
    for basin, timewarp in result["basins"].items():
        if basin not in tempering:
            raise SystemExit(f"the tempering run in {run} has no basin {basin}: another peptide?")
        against_tempering = heldout_table.population_deviation(timewarp, tempering[basin])
        against_md = {"population": timewarp["reference"], "error": timewarp["reference_error"]}
        md_sigma = heldout_table.population_deviation(against_md, tempering[basin])["sigma"]
        rows[basin] = {
            **against_tempering,
            "tempering_310K_frames": from_310K[basin]["population"],
            "tempering_310K_frames_error": from_310K[basin]["error"],
            "md_references": timewarp["reference"],
            "md_references_error": timewarp["reference_error"],
            "md_references_sigma_from_tempering": md_sigma,
        }
        print(
            f"| {basin} | {timewarp['population']:.4f} ± {timewarp['error']:.4f} "
            f"| {tempering[basin]['population']:.4f} ± {tempering[basin]['error']:.4f} "
            f"| {against_tempering['sigma']:+.1f} "
            f"| {from_310K[basin]['population']:.4f} ± {from_310K[basin]['error']:.4f} "
            f"| {timewarp['reference']:.4f} ± {timewarp['reference_error']:.4f} | {md_sigma:+.1f} |"
        )
    within = sum(row["within_2_sigma"] for row in rows.values())
    print(f"Timewarp within 2 sigma of tempering: {within} of {len(rows)} basins\n")
    return {
        "sequence": sequence,
        "termini": termini,
        "tempering_frames": at_310K.n_frames,
        "tempering_frames_all_temperatures": frames,
        "model": result.get("model"),
        "basins": rows,
    }


def deviations(record: dict) -> tuple[list[float], list[float]]:
    """Timewarp's and MD + references' deviations from tempering, in sigma, basin by basin."""
    rows = record["basins"].values()
    return [r["sigma"] for r in rows], [r["md_references_sigma_from_tempering"] for r in rows]


def within(sigmas: list[float]) -> int:
    """How many deviations are within 2 sigma, as ``heldout_table.population_deviation`` counts."""
    return sum(abs(sigma) <= 2.0 for sigma in sigmas)


def summary_table(records: list[dict]) -> str:
    """One row per peptide (basins within 2 sigma of tempering, worst basin) and the totals."""

    def cell(sigmas: list[float], names: list[str]) -> str:
        worst = max(range(len(sigmas)), key=lambda i: abs(sigmas[i]))
        return f"{within(sigmas)} of {len(sigmas)} (worst {names[worst]} {sigmas[worst]:+.1f})"

    lines = [
        "| peptide | tempering frames at 310 K (all temperatures) "
        "| Timewarp within 2 sigma of tempering "
        "| MD + references within 2 sigma of tempering |",
        "|---|---|---|---|",
    ]
    all_timewarp, all_md = [], []
    for record in records:
        timewarp, md = deviations(record)
        names = list(record["basins"])
        lines.append(
            f"| {record['sequence']} ({record['termini']}) | {record['tempering_frames']} "
            f"({record.get('tempering_frames_all_temperatures', 'not reweighted')}) "
            f"| {cell(timewarp, names)} | {cell(md, names)} |"
        )
        all_timewarp += timewarp
        all_md += md
    count, timewarp_within, md_within = len(all_timewarp), within(all_timewarp), within(all_md)
    lines.append(
        f"| all ({len(records)} peptides) | | {timewarp_within} of {count} | "
        f"{md_within} of {count} |"
    )
    exact = heldout_table.EXACT_WITHIN_2_SIGMA
    lines.append(
        f"\nAn exact sampler puts {exact:.1%} of basins within 2 sigma ({exact * count:.1f} of "
        f"{count}); the basins of one residue share its frames, so the counts are correlated "
        "(a two-basin residue's two deviations are equal)."
    )
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> None:
    """Every basin's deviation from tempering, Timewarp and MD + references, a column a peptide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(max(5.5, 1.0 + 0.6 * len(records)), 4.0))
    for column, record in enumerate(records):
        timewarp, md = deviations(record)
        axes.scatter([column - 0.12] * len(timewarp), timewarp, s=14, color="tab:blue")
        axes.scatter([column + 0.12] * len(md), md, s=14, color="tab:orange", marker="s")
    axes.scatter([], [], color="tab:blue", label="Timewarp (MH)")
    axes.scatter([], [], color="tab:orange", marker="s", label="MD + references")
    axes.axhspan(-2, 2, color="0.9", zorder=0, label="within 2 sigma")
    axes.axhline(0, color="0.5", linewidth=0.8)
    axes.set_xticks(range(len(records)), [r["sequence"] for r in records])
    axes.set_xlim(-0.6, len(records) - 0.4)
    axes.set_ylabel("deviation from parallel tempering (sigma)")
    axes.set_title("backbone basins vs parallel tempering, 310 K", fontsize=10)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequences", nargs="+")
    parser.add_argument("--termini", default="zwitterionic", choices=("zwitterionic", "capped"))
    parser.add_argument("--heldout", type=Path, required=True, help="timewarp heldout folder")
    parser.add_argument("--tempering-cpu", type=float, default=3600.0, help="more CPU s of PT")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder of the PT runs")
    args = parser.parse_args()

    results = {s: heldout_result(args.heldout, s, args.termini) for s in args.sequences}
    for sequence, result in results.items():
        run = args.output / sequence
        if args.tempering_cpu > 0:
            run_tempering(run, sequence, args.termini, args.tempering_cpu)
        elif not (run / reference.STORAGE_NAME).is_file():
            raise SystemExit(f"no tempering run in {run}: give --tempering-cpu to run one")
        record = compare(result, run, sequence, args.termini)
        (run / BASINS_FILE).write_text(json.dumps(record, indent=2) + "\n")

    # The summary takes every peptide in OUTPUT compared with this model, not only those named.
    model = next(iter(results.values())).get("model")
    records = []
    for path in sorted(args.output.glob(f"*/{BASINS_FILE}")):
        record = json.loads(path.read_text())
        if record.get("model") == model:
            records.append(record)
        else:
            print(f"left out of the summary: {path} compared another model")
    table = summary_table(records)
    (args.output / "basins.md").write_text(table)
    plot(records, args.output / "basins.png")
    print(table)
    print(f"wrote {args.output / 'basins.md'} and {args.output / 'basins.png'}")


if __name__ == "__main__":
    main()
