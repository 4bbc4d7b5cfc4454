"""The parser of ``timewarp dipeptides`` and ``timewarp tetrapeptides`` (one for both): print or
regenerate a training / held-out split of :mod:`openmm_timewarp.data.splits`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from openmm_timewarp.data.splits import (
    load_split,
    recipe_split,
    split_file,
    write_split,
)


def add_split_parser(subparsers: argparse._SubParsersAction, kind: str) -> None:
    """Register ``timewarp KIND`` for the split ``kind``: dipeptides or tetrapeptides."""
    file_name = split_file(kind).name  # refuses an unknown kind
    parser = subparsers.add_parser(
        kind,
        help=f"print or regenerate the {kind[:-1]} training / held-out split",
        description=f"Print sequences of the committed {kind[:-1]} split (one per line, for "
        "shell loops and job arrays), or regenerate it.",
    )
    parser.add_argument("--write", action="store_true", help=f"regenerate {file_name}")
    parser.add_argument("--list", choices=("train", "held-out"), help="print these sequences")
    parser.add_argument("--count", type=_whole_number(1), help="print only the first COUNT")
    parser.add_argument(
        "--start", type=_whole_number(0), default=0, help="skip the first START of them"
    )
    parser.add_argument(
        "--shuffle",
        type=int,
        metavar="SEED",
        help="list them in a random order drawn with SEED (a random evaluation subset)",
    )
    parser.set_defaults(handler=_print_split, kind=kind)


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def _print_split(args: argparse.Namespace) -> int:
    if not args.write and args.list is None:
        raise ValueError("give --write or --list")
    if args.write:
        path = split_file(args.kind)
        write_split(recipe_split(args.kind), path)
        print(f"wrote {path}")
    if args.list is not None:
        split = load_split(args.kind)
        sequences = split.training if args.list == "train" else split.held_out
        if args.start >= len(sequences):
            raise ValueError(
                f"--start {args.start} is past the end of the {len(sequences)} sequences"
            )
        if args.shuffle is not None:
            order = np.random.default_rng(args.shuffle).permutation(len(sequences))
            sequences = tuple(sequences[i] for i in order)
        end = None if args.count is None else args.start + args.count
        print("\n".join(sequences[args.start : end]))
    return 0
