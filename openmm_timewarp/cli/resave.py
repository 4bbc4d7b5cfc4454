"""``timewarp resave``: re-save model files with this version's checksum."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resave",
        help="re-save model files with this version's checksum (same weights)",
        description="Re-save proposal-model files in place, with the checksum that this version "
        "verifies on load (docs/trust.md). For files written by older versions: loading one runs "
        "its TorchScript, so re-save only files you trust.",
    )
    parser.add_argument("models", nargs="+", type=Path, help="model files")
    parser.set_defaults(handler=_resave)


def _resave(args: argparse.Namespace) -> int:
    from openmm_timewarp.models.contract import resave

    for path in args.models:
        resave(path)
        print(f"{path}: re-saved with a checksum")
    return 0
