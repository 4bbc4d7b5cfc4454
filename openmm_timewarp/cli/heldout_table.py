"""``timewarp heldout-table``: one held-out table from several ``timewarp heldout`` folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from openmm_timewarp.evaluation.heldout import TABLE_FILE
from openmm_timewarp.evaluation.heldout_merge import SOURCES_FILE, merge_heldout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``timewarp heldout-table`` on a subparsers object (sets ``handler``)."""
    parser = subparsers.add_parser(
        "heldout-table",
        help="one table from `timewarp heldout` folders of the same evaluation",
        description="Merge `timewarp heldout` folders of one evaluation (same model, termini, "
        "references and settings; MD budgets may differ, as where some peptides' MD runs were "
        "continued in a folder of their own): each peptide's row comes from the folder with its "
        "longest MD run. Writes OUTPUT/table.md, OUTPUT/speedups.png and OUTPUT/sources.json "
        "(each peptide's folder) and prints the table.",
    )
    parser.add_argument("folders", nargs="+", type=Path, help="`timewarp heldout` folders")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder of the table")
    parser.set_defaults(handler=_heldout_table_command)


def _heldout_table_command(args: argparse.Namespace) -> int:
    rows = merge_heldout(args.folders, args.output)
    for result, folder in rows:
        md = result["md"]
        timed = (
            f"; {md['wall_s_per_ns'] / md['timing']['wall_s_per_ns']:.2f}x its long run's speed "
            "when timed beside Timewarp"
            if "timing" in md
            else "; not timed beside Timewarp"
        )
        print(f"{result['sequence']}: {folder} (MD {md['wall_s']:.0f} s{timed})")
    print(f"sources: {args.output / SOURCES_FILE}")
    print((args.output / TABLE_FILE).read_text())
    return 0
