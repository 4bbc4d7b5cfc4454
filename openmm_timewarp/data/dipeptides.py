"""The 400 dipeptides of the 20 amino acids and their fixed training / held-out split.

Transferable models train on at most half of the two-residue sequences and are evaluated on the
others, which they never see. The split is drawn once with a fixed seed and committed as
``dipeptide_split.json`` next to this module; :func:`load_split` reads it and the tests check that
it equals :func:`dipeptide_split`. Regenerate it (only when the recipe changes) with::

    timewarp dipeptides --write

The training list keeps the random order of the draw, so any prefix of it (the first 16 sequences
simulated on a small machine, say) is itself a random sample; the held-out list is sorted.
``--list held-out --shuffle 1 --count 8`` draws a random evaluation subset of the held-out ones.

``timewarp dipeptides --list train --count 16`` prints sequences one per line, for
shell loops and job arrays (``examples/generate_dipeptide_data.sh``).

Transferable models type atoms with the ``peptide-atom`` scheme (the atom name, whatever the
residue;
``openmm_timewarp.models.contract``) over :func:`peptide_atom_vocabulary`, which covers every
residue of the 20 amino acids in every protonation and terminal form, so any dipeptide maps.
"""

from __future__ import annotations

import functools
import itertools
import json
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import openmm.app

from openmm_timewarp.data.peptides import ONE_TO_THREE

SPLIT_FILE = Path(__file__).parent / "dipeptide_split.json"
SPLIT_SEED = 2023
NUM_TRAINING = 200


def all_dipeptides() -> list[str]:
    """The 400 two-letter sequences in the order of ``ONE_TO_THREE``, first residue slowest."""
    return ["".join(pair) for pair in itertools.product(ONE_TO_THREE, repeat=2)]


@functools.cache
def peptide_atom_vocabulary() -> tuple[str, ...]:
    """Every atom name of amber14's protein residue templates (ff14SB), sorted.

    The templates cover the 20 amino acids with their protonation variants, N- and C-terminal
    forms and the ACE / NME / NHE caps: exactly the atoms a peptide built here can have.
    """
    path = Path(openmm.app.__file__).parent / "data" / "amber14" / "protein.ff14SB.xml"
    root = ElementTree.parse(path).getroot()
    return tuple(sorted({atom.get("name") for atom in root.iter("Atom") if atom.get("name")}))


@dataclass(frozen=True)
class DipeptideSplit:
    """Training sequences (in draw order) and held-out sequences (sorted); disjoint, 400 in all."""

    seed: int
    training: tuple[str, ...]
    held_out: tuple[str, ...]


def dipeptide_split(seed: int = SPLIT_SEED, num_training: int = NUM_TRAINING) -> DipeptideSplit:
    """Draw ``num_training`` (at most half) of the 400 for training; the rest are held out."""
    sequences = all_dipeptides()
    if not 0 < num_training <= len(sequences) // 2:
        raise ValueError(
            f"num_training must be between 1 and {len(sequences) // 2} (at most half of the "
            f"{len(sequences)} dipeptides are trained on); got {num_training}."
        )
    order = np.random.default_rng(seed).permutation(len(sequences))
    training = tuple(sequences[i] for i in order[:num_training])
    held_out = tuple(sorted(sequences[i] for i in order[num_training:]))
    return DipeptideSplit(seed=seed, training=training, held_out=held_out)


def load_split(path: str | Path = SPLIT_FILE) -> DipeptideSplit:
    """Read the committed split (or another file written by :func:`write_split`)."""
    try:
        record = json.loads(Path(path).read_text())
        return DipeptideSplit(
            seed=int(record["seed"]),
            training=tuple(record["training"]),
            held_out=tuple(record["held_out"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Cannot read the dipeptide split {path}: {error}. Regenerate it with "
            "`timewarp dipeptides --write`."
        ) from None


def write_split(split: DipeptideSplit, path: str | Path = SPLIT_FILE) -> None:
    """Write ``split`` as JSON (sequences one per line, so diffs stay readable)."""
    record = asdict(split)
    record["training"] = list(split.training)
    record["held_out"] = list(split.held_out)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
