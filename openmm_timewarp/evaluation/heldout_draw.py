"""Held-out lists by split name, and reproducible random draws of peptides from them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from openmm_timewarp.data.splits import SPLIT_KINDS, load_split


def _held_out(kind: str) -> Callable[[], Sequence[str]]:
    def sequences() -> Sequence[str]:
        return load_split(kind).held_out

    return sequences


#: Named held-out lists: a split name resolves to its sequences through these functions.
HELD_OUT_LISTS: dict[str, Callable[[], Sequence[str]]] = {
    kind: _held_out(kind) for kind in SPLIT_KINDS
}


def held_out_sequences(name: str) -> tuple[str, ...]:
    """The held-out sequences of the split called ``name`` (a key of :data:`HELD_OUT_LISTS`)."""
    if name not in HELD_OUT_LISTS:
        raise ValueError(f"unknown held-out list {name!r}; choose from {sorted(HELD_OUT_LISTS)}")
    return tuple(HELD_OUT_LISTS[name]())


def draw_peptides(sequences: Sequence[str], count: int, seed: int, skip: int = 0) -> list[str]:
    """``count`` of ``sequences`` drawn at random without replacement with ``seed``.

    ``skip`` leaves out the first ``skip`` of the same draw: a draw of ``skip + count`` is the
    draw of ``skip`` followed by these, so peptides an earlier table used never come back.
    """
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    if not 1 <= count <= len(sequences) - skip:
        after = f" after skipping {skip}" if skip else ""
        raise ValueError(f"count must be between 1 and {len(sequences) - skip}{after}, got {count}")
    order = np.random.default_rng(seed).permutation(len(sequences))
    return [sequences[i] for i in order[skip : skip + count]]
