"""Every backbone basin of a held-out peptide: a `timewarp heldout` result against tempering.

    python bench/tempering_basins.py PYGK --heldout runs/tetra-md3600 --tempering-cpu 3600 \
        -o runs/tempering-PYGK

The held-out table tests Timewarp's basin populations against the reference runs and MD's long
run together (:mod:`openmm_timewarp.evaluation.heldout_basins`); a basin that MD enters a handful
of times in 50 ns (a C-terminal phi > 0) is then decided by those few entries. Parallel tempering
(the reference protocol of :mod:`openmm_timewarp.evaluation.reference`, its 310 K state) is a third
sampler of the same Boltzmann distribution that crosses such barriers at the hot replicas. This
script runs it (or continues a run in OUTPUT, for ``--tempering-cpu`` more CPU seconds; 0 only
reads it), takes every residue's basin populations from its 310 K frames with the table's errors,
and prints each basin's Timewarp, tempering and MD + references populations with the deviations
in combined standard errors; OUTPUT/basins.json keeps them.

``--heldout`` is a `timewarp heldout` folder holding SEQUENCE-TERMINI/result.json, or a
`timewarp heldout-table` folder (its sources.json names the folder of each peptide's row).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmm_timewarp.evaluation import heldout_basins, heldout_table, reference
from openmm_timewarp.evaluation.heldout import RESULT_FILE
from openmm_timewarp.evaluation.heldout_merge import SOURCES_FILE


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequence")
    parser.add_argument("--termini", default="zwitterionic", choices=("zwitterionic", "capped"))
    parser.add_argument("--heldout", type=Path, required=True, help="timewarp heldout folder")
    parser.add_argument("--tempering-cpu", type=float, default=3600.0, help="more CPU s of PT")
    parser.add_argument("-o", "--output", type=Path, required=True, help="tempering run folder")
    args = parser.parse_args()

    result = heldout_result(args.heldout, args.sequence, args.termini)
    if args.tempering_cpu > 0:
        run_tempering(args.output, args.sequence, args.termini, args.tempering_cpu)
    trajectory = reference.read_state_trajectory(args.output, discard_fraction=0.1)
    _, tempering = heldout_basins.states_and_basins([trajectory])

    rows = {}
    print(f"{args.sequence}: {trajectory.n_frames} tempering frames at 310 K")
    print("| basin | Timewarp | tempering | sigma | MD + references | sigma |")
    print("|---|---|---|---|---|---|")
    for basin, timewarp in result["basins"].items():
        if basin not in tempering:
            raise SystemExit(f"the tempering run has no basin {basin}: another peptide?")
        against_tempering = heldout_table.population_deviation(timewarp, tempering[basin])
        against_md = {"population": timewarp["reference"], "error": timewarp["reference_error"]}
        md_sigma = heldout_table.population_deviation(against_md, tempering[basin])["sigma"]
        rows[basin] = {
            **against_tempering,
            "md_references": timewarp["reference"],
            "md_references_error": timewarp["reference_error"],
            "md_references_sigma_from_tempering": md_sigma,
        }
        print(
            f"| {basin} | {timewarp['population']:.4f} ± {timewarp['error']:.4f} "
            f"| {tempering[basin]['population']:.4f} ± {tempering[basin]['error']:.4f} "
            f"| {against_tempering['sigma']:+.1f} "
            f"| {timewarp['reference']:.4f} ± {timewarp['reference_error']:.4f} | {md_sigma:+.1f} |"
        )
    within = sum(row["within_2_sigma"] for row in rows.values())
    print(f"Timewarp within 2 sigma of tempering: {within} of {len(rows)} basins")
    record = {
        "sequence": args.sequence,
        "termini": args.termini,
        "tempering_frames": trajectory.n_frames,
        "model": result.get("model"),
        "basins": rows,
    }
    (args.output / "basins.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
