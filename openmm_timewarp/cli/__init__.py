"""The ``timewarp`` command line.

Each subcommand is a module of this package with ``add_parser(subparsers)``, which registers its
parser and sets ``handler``, a thin call into the library (argument checks and printing only);
adding one means writing such a module and listing it in :data:`SUBCOMMANDS`. What they share
(the help formatter, number types) is in :mod:`openmm_timewarp.cli.common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openmm_timewarp.cli import (
    benchmark,
    build,
    dipeptides,
    heldout,
    heldout_table,
    info,
    md_rate,
    reference,
    resave,
    sample,
    simulate,
    tetrapeptides,
    train,
)
from openmm_timewarp.cli.common import CommandParser
from openmm_timewarp.optional import require

# The subcommands read trajectories with mdtraj (the cli extra): without it, importing this module
# fails at once, and ``timewarp`` says which extra to install (openmm_timewarp.__main__).
require("mdtraj")

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = (
    build,
    simulate,
    info,
    train,
    benchmark,
    md_rate,
    heldout,
    heldout_table,
    sample,
    resave,
    reference,
    dipeptides,
    tetrapeptides,
)


def version_text() -> str:
    """The package's version and the OpenMM and torch its plugin was built against."""
    from openmm_timewarp import __version__, _built_against

    return (
        f"openmm-timewarp {__version__} (plugin built against OpenMM "
        f"{_built_against.OPENMM_VERSION}, torch {_built_against.TORCH_VERSION})"
    )


def make_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="timewarp",
        description="Timewarp for OpenMM: data generation, training and evaluation tools.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timewarp`` console script; bad input exits with status 2."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(
            f"timewarp {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, RuntimeError, OSError) as error:
        print(f"timewarp {args.command}: error: {error}", file=sys.stderr)
        return 2
