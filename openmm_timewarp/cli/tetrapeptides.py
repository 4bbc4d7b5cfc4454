"""``timewarp tetrapeptides``: print or regenerate the tetrapeptide training / held-out split."""

from __future__ import annotations

import argparse

from openmm_timewarp.cli.splits import add_split_parser


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_split_parser(subparsers, "tetrapeptides")
