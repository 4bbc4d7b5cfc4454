"""The fixed training / held-out splits of dipeptides and tetrapeptides for transferable models.

Transferable models train on sequences of one list and are evaluated on the other, which they never
see. Each split is drawn once with a fixed seed and committed as JSON next to this module
(``dipeptide_split.json``, ``tetrapeptide_split.json``); :func:`load_split` reads it and the tests
check that it equals :func:`recipe_split`. Regenerate one (only when its recipe changes) with::

    timewarp dipeptides --write
    timewarp tetrapeptides --write

- Dipeptides: 200 of the 400 two-residue sequences for training, the other 200 held out.
- Tetrapeptides: 200 for training, drawn among the tetrapeptides whose three adjacent residue pairs
  are all dipeptides of the training list, so that no held-out dipeptide is seen in a training step,
  not even as the local context of a residue in a longer chain; 100 held out, drawn among all other
  tetrapeptides (an unseen tetrapeptide as a user would bring one: most of them hold a held-out
  pair, some hold only training pairs).

The training lists keep the random order of the draw, so any prefix (the first 16 sequences
simulated on a small machine, say) is itself a random sample; the held-out lists are sorted.
``timewarp dipeptides --list held-out --shuffle 1 --count 8`` draws a random evaluation subset, and
``timewarp tetrapeptides --list train --count 16`` prints sequences one per line for shell loops and
job arrays (``examples/generate_peptide_data.sh``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from openmm_timewarp.data.peptides import ONE_TO_THREE

#: The split names, as the ``timewarp`` subcommands that print them.
SPLIT_KINDS: tuple[str, ...] = ("dipeptides", "tetrapeptides")
SPLIT_SEED = 2023
NUM_TRAINING_DIPEPTIDES = 200
#: About 22 CPU-hours of data at 0.5 ns each on the Reference platform (docs/training.md).
NUM_TRAINING_TETRAPEPTIDES = 200
NUM_HELD_OUT_TETRAPEPTIDES = 100
_SPLIT_FILES = {
    "dipeptides": Path(__file__).parent / "dipeptide_split.json",
    "tetrapeptides": Path(__file__).parent / "tetrapeptide_split.json",
}


@dataclass(frozen=True)
class PeptideSplit:
    """Training sequences (in draw order) and held-out sequences (sorted), disjoint."""

    seed: int
    training: tuple[str, ...]
    held_out: tuple[str, ...]


def all_sequences(length: int) -> list[str]:
    """Every sequence of ``length`` of the 20 residues, in the order of ``ONE_TO_THREE``, the
    first residue slowest (400 dipeptides, 160,000 tetrapeptides)."""
    if length < 1:
        raise ValueError(f"A sequence has at least one residue; got length {length}.")
    return ["".join(letters) for letters in itertools.product(ONE_TO_THREE, repeat=length)]


def adjacent_pairs(sequence: str) -> list[str]:
    """The dipeptides a sequence is made of, N- to C-terminus: ``"KLED"`` -> KL, LE, ED."""
    return [sequence[i : i + 2] for i in range(len(sequence) - 1)]


def dipeptide_split(
    seed: int = SPLIT_SEED, num_training: int = NUM_TRAINING_DIPEPTIDES
) -> PeptideSplit:
    """Draw ``num_training`` (at most half) of the 400 for training; the rest are held out."""
    sequences = all_sequences(2)
    if not 0 < num_training <= len(sequences) // 2:
        raise ValueError(
            f"num_training must be between 1 and {len(sequences) // 2} (at most half of the "
            f"{len(sequences)} dipeptides are trained on); got {num_training}."
        )
    order = np.random.default_rng(seed).permutation(len(sequences))
    training = tuple(sequences[i] for i in order[:num_training])
    held_out = tuple(sorted(sequences[i] for i in order[num_training:]))
    return PeptideSplit(seed=seed, training=training, held_out=held_out)


def tetrapeptide_split(
    seed: int = SPLIT_SEED,
    num_training: int = NUM_TRAINING_TETRAPEPTIDES,
    num_held_out: int = NUM_HELD_OUT_TETRAPEPTIDES,
    dipeptides: PeptideSplit | None = None,
) -> PeptideSplit:
    """Draw training tetrapeptides made only of ``dipeptides``' training pairs (default: the
    dipeptide recipe's), and held-out ones among all other tetrapeptides."""
    training_pairs = set((dipeptides or dipeptide_split()).training)
    sequences = all_sequences(4)
    eligible = [s for s in sequences if set(adjacent_pairs(s)) <= training_pairs]
    if not 0 < num_training <= len(eligible) // 2:
        raise ValueError(
            f"num_training must be between 1 and {len(eligible) // 2} (at most half of the "
            f"{len(eligible)} tetrapeptides made of training dipeptides); got {num_training}."
        )
    if not 0 < num_held_out <= len(sequences) // 2:
        raise ValueError(
            f"num_held_out must be between 1 and {len(sequences) // 2}; got {num_held_out}."
        )
    rng = np.random.default_rng(seed)
    training = tuple(eligible[i] for i in rng.permutation(len(eligible))[:num_training])
    trained = set(training)
    others = [s for s in sequences if s not in trained]
    chosen = rng.choice(len(others), size=num_held_out, replace=False)
    held_out = tuple(sorted(others[i] for i in chosen))
    return PeptideSplit(seed=seed, training=training, held_out=held_out)


def _check_kind(kind: str) -> None:
    if kind not in SPLIT_KINDS:
        raise ValueError(f"Unknown split {kind!r}; the splits are {', '.join(SPLIT_KINDS)}.")


def split_file(kind: str) -> Path:
    """The committed JSON file of the split ``kind`` (one of :data:`SPLIT_KINDS`)."""
    _check_kind(kind)
    return _SPLIT_FILES[kind]


def recipe_split(kind: str) -> PeptideSplit:
    """The split ``kind`` drawn by its recipe, which the committed file must equal."""
    _check_kind(kind)
    return dipeptide_split() if kind == "dipeptides" else tetrapeptide_split()


def load_split(kind: str = "dipeptides", path: str | Path | None = None) -> PeptideSplit:
    """Read the committed split ``kind`` (or another file written by :func:`write_split`)."""
    path = split_file(kind) if path is None else Path(path)
    try:
        record = json.loads(path.read_text())
        return PeptideSplit(
            seed=int(record["seed"]),
            training=tuple(record["training"]),
            held_out=tuple(record["held_out"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Cannot read the {kind} split {path}: {error}. Regenerate it with "
            f"`timewarp {kind} --write`."
        ) from None


def write_split(split: PeptideSplit, path: str | Path) -> None:
    """Write ``split`` as JSON (sequences one per line, so diffs stay readable)."""
    record = asdict(split)
    record["training"] = list(split.training)
    record["held_out"] = list(split.held_out)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
