"""``timewarp`` and ``python -m openmm_timewarp``: the command line, or which extra it needs.

The CLI's data, training and analysis tools need the ``cli`` extra; without it the command says
what to install instead of showing a traceback.
"""

from __future__ import annotations

import sys

from openmm_timewarp.optional import MissingExtraError


def main() -> int:
    try:
        from openmm_timewarp.cli import main as cli_main
    except MissingExtraError as error:
        print(
            f"timewarp: error: the command needs the packages of the cli extra ({error.name} is "
            "missing): pip install 'openmm-timewarp[cli]'",
            file=sys.stderr,
        )
        return 1
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
