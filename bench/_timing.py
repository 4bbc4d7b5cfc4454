"""The timing loop the benchmarks share: the fastest of several timed windows, per call."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time_per_call(
    function: Callable[[], object],
    calls: int,
    repeats: int,
    warmup: int = 0,
    clock: Callable[[], float] = time.process_time,
) -> float:
    """The fastest of `repeats` timings of `calls` calls, per call (seconds of `clock`), after
    `warmup` untimed calls. Process CPU time by default: load from other processes on a shared
    machine disturbs it far less than wall time."""
    for _ in range(warmup):
        function()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        for _ in range(calls):
            function()
        best = min(best, (clock() - start) / calls)
    return best
