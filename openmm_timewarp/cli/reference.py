"""``timewarp reference``: the parallel-tempering reference for alanine dipeptide's phi > 0
population."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmm_timewarp.evaluation.reference import (
    MAX_TEMPERATURE_K,
    NUM_REPLICAS,
    TEMPERATURE_K,
    analyze_reference,
    geometric_temperatures,
    run_reference,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``timewarp reference run|analyze`` (sets ``handler``)."""
    parser = subparsers.add_parser(
        "reference",
        help="parallel-tempering reference for alanine dipeptide's phi > 0 population",
        description="Run or resume openmmtools' parallel tempering of capped alanine dipeptide "
        "(amber14-all + OBC2, Reference platform), or analyse a run: the population of phi > 0 "
        "at 310 K with errors (needs the reference extra: openmmtools).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run or resume the parallel tempering")
    run.add_argument("--output", type=Path, default=Path("data/reference"), help="run folder")
    run.add_argument("--iterations", type=int, default=20_000, help="total iterations wanted")
    run.add_argument("--replicas", type=int, default=NUM_REPLICAS, help="temperatures")
    run.add_argument("--max-temperature", type=float, default=MAX_TEMPERATURE_K, help="K")
    analyze = actions.add_parser("analyze", help="population of phi > 0 with errors (JSON)")
    analyze.add_argument("--output", type=Path, default=Path("data/reference"), help="run folder")
    analyze.add_argument(
        "--discard-fraction", type=float, default=0.1, help="first iterations dropped"
    )
    parser.set_defaults(handler=_reference_command)


def _reference_command(args: argparse.Namespace) -> int:
    if args.action == "run":
        ladder = geometric_temperatures(TEMPERATURE_K, args.max_temperature, args.replicas)
        run_reference(args.output, args.iterations, temperatures=ladder)
    else:
        print(json.dumps(analyze_reference(args.output, args.discard_fraction), indent=2))
    return 0
