"""``timewarp dipeptides``: print or regenerate the dipeptide training / held-out split."""

from __future__ import annotations

import argparse

import numpy as np

from openmm_timewarp.data.dipeptides import SPLIT_FILE, dipeptide_split, load_split, write_split


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dipeptides",
        help="print or regenerate the dipeptide training / held-out split",
        description="Print sequences of the committed dipeptide split (one per line, for shell "
        "loops and job arrays), or regenerate it.",
    )
    parser.add_argument("--write", action="store_true", help=f"regenerate {SPLIT_FILE.name}")
    parser.add_argument("--list", choices=("train", "held-out"), help="print these sequences")
    parser.add_argument("--count", type=int, help="print only the first COUNT of them")
    parser.add_argument("--start", type=int, default=0, help="skip the first START of them")
    parser.add_argument(
        "--shuffle",
        type=int,
        metavar="SEED",
        help="list them in a random order drawn with SEED (a random evaluation subset)",
    )
    parser.set_defaults(handler=_dipeptides)


def _dipeptides(args: argparse.Namespace) -> int:
    if not args.write and args.list is None:
        raise ValueError("give --write or --list")
    if args.write:
        write_split(dipeptide_split())
        print(f"wrote {SPLIT_FILE}")
    if args.list is not None:
        split = load_split()
        sequences = split.training if args.list == "train" else split.held_out
        if args.shuffle is not None:
            order = np.random.default_rng(args.shuffle).permutation(len(sequences))
            sequences = tuple(sequences[i] for i in order)
        end = None if args.count is None else args.start + args.count
        print("\n".join(sequences[args.start : end]))
    return 0
