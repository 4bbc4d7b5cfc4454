"""Progress bars on a terminal; plain periodic lines in logs that are not one (SLURM, pipes)."""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

from tqdm import tqdm

#: Seconds between the plain progress lines written to a log that is not a terminal.
LOG_INTERVAL_S = 60.0

_CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _PlainLines:
    """A tqdm output that turns each in-place update into one plain line of a log file."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = _CURSOR_MOVES.sub("", text).strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(*, enabled: bool = True, stream: TextIO | None = None, **options: Any) -> tqdm:
    """A tqdm bar on ``stream`` (standard error by default) when it is a terminal; otherwise the
    same progress as a plain line every :data:`LOG_INTERVAL_S` seconds (and one at the end), so
    logs stay readable. ``options`` are tqdm's; ``enabled=False`` shows nothing."""
    stream = stream or sys.stderr
    if not enabled:
        return tqdm(disable=True, **options)
    if stream.isatty():
        return tqdm(file=stream, **options)
    options.pop("position", None)  # there are no lines to return to in a log
    options.update(mininterval=LOG_INTERVAL_S, dynamic_ncols=False, ascii=True)
    return tqdm(file=_PlainLines(stream), **options)
