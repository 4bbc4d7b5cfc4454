"""Proposal-model metadata (``timewarp.json``) and how a Topology maps onto a model's atom types.

:class:`ModelMetadata` is what a model file says about itself (docs/contract.md);
:meth:`ModelMetadata.for_molecule` is the one builder of the metadata of a model made for one
molecule. :func:`atom_types_for_topology` turns a Topology into a model's atom-type codes,
:func:`chiral_centres` into the quadruples whose handedness the integrator keeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from openmm import app

FORMAT_VERSION = 1
METADATA_FILE = "timewarp.json"
MODEL_FAMILIES = (
    "timewarp-flow",
    "ic-conditional",
    "ic-independent",
    "ic-mixture",
    "ic-rotor",
    "ic-backbone",
    "simple",
)
ATOM_TYPE_SCHEMES = ("element", "residue-atom", "peptide-atom")
#: Residues the ``peptide-atom`` scheme types by atom name alone (``CA``, ``HB2``, ...): the 20
#: amino acids, amber14's protonation variants and the ACE / NME / NHE caps.
PEPTIDE_RESIDUES = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "ASH CYM CYX GLH HID HIE HIP LYN ACE NME NHE".split()
)


@dataclass
class ModelMetadata:
    """What a proposal-model file says about itself (stored as ``timewarp.json``)."""

    name: str
    family: str
    tau_ps: float
    temperature_K: float
    forcefield: str
    atom_type_scheme: str
    atom_types: list[str]
    num_atoms: int | None = None
    training: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.family not in MODEL_FAMILIES:
            raise ValueError(
                f"unknown model family {self.family!r}; expected one of {MODEL_FAMILIES}"
            )
        if self.atom_type_scheme not in ATOM_TYPE_SCHEMES:
            raise ValueError(
                f"unknown atom-type scheme {self.atom_type_scheme!r}; "
                f"expected one of {ATOM_TYPE_SCHEMES}"
            )
        if not (math.isfinite(self.tau_ps) and self.tau_ps > 0):
            raise ValueError(f"tau_ps must be a positive number of picoseconds, got {self.tau_ps}")
        if not (math.isfinite(self.temperature_K) and self.temperature_K > 0):
            raise ValueError(f"temperature_K must be positive, got {self.temperature_K}")
        if not self.atom_types or len(set(self.atom_types)) != len(self.atom_types):
            raise ValueError("atom_types must be a non-empty list of distinct labels")
        if self.num_atoms is not None and self.num_atoms < 1:
            raise ValueError(f"num_atoms must be positive or None (any), got {self.num_atoms}")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"model file format {self.format_version} is not supported by this version of "
                f"openmm-timewarp (format {FORMAT_VERSION}); re-export the model"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            fields = json.loads(text)
            return cls(**fields)
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"malformed {METADATA_FILE}: {error}") from error

    @classmethod
    def for_molecule(
        cls,
        molecule: app.Topology | Sequence[str],
        *,
        name: str,
        family: str,
        tau_ps: float,
        temperature_K: float,
        forcefield: str,
        training: dict | None = None,
        atom_type_scheme: str = "residue-atom",
    ) -> ModelMetadata:
        """Metadata of a model made for one molecule (``num_atoms`` its atom count).

        ``molecule`` is its Topology, or for the ``residue-atom`` scheme the atoms' labels in
        Topology order as a proposal built from it carries them. The vocabulary is those labels
        (one type per atom), or under the ``element`` scheme the molecule's elements.
        """
        if atom_type_scheme not in ("residue-atom", "element"):
            raise ValueError(f"a one-molecule model has no {atom_type_scheme!r} vocabulary")
        if isinstance(molecule, app.Topology):
            atoms = list(molecule.atoms())
            labels = [residue_atom_label(atom) for atom in atoms]
            elements = sorted({_element_symbol(atom) for atom in atoms})
        elif atom_type_scheme == "residue-atom":
            labels = list(molecule)
        else:
            raise ValueError("the element vocabulary needs the molecule's Topology")
        return cls(
            name=name,
            family=family,
            tau_ps=tau_ps,
            temperature_K=temperature_K,
            forcefield=forcefield,
            atom_type_scheme=atom_type_scheme,
            atom_types=labels if atom_type_scheme == "residue-atom" else elements,
            num_atoms=len(labels),
            training=dict(training or {}),
        )


def residue_atom_label(atom: app.topology.Atom) -> str:
    """The ``residue-atom`` label of an atom: ``"<residue index>:<residue name>:<atom name>"``."""
    return f"{atom.residue.index}:{atom.residue.name}:{atom.name}"


def atom_types_for_topology(topology: app.Topology, metadata: ModelMetadata) -> np.ndarray:
    """Type codes of the Topology's atoms in the model's vocabulary (int64, one per atom)."""
    atoms = list(topology.atoms())
    if metadata.num_atoms is not None and len(atoms) != metadata.num_atoms:
        raise ValueError(
            f"the model {metadata.name!r} is for {metadata.num_atoms} atoms, "
            f"the Topology has {len(atoms)}"
        )
    return atom_type_codes(topology, metadata.atom_type_scheme, metadata.atom_types, metadata.name)


def atom_type_codes(
    topology: app.Topology, scheme: str, vocabulary: Sequence[str], model_name: str
) -> np.ndarray:
    """Type codes of the Topology's atoms in ``vocabulary`` under the atom-type ``scheme`` (int64,
    one per atom); ``model_name`` names the model in errors."""
    atoms = list(topology.atoms())
    if scheme == "element":
        labels = [_element_symbol(atom) for atom in atoms]
    elif scheme == "peptide-atom":
        others = sorted({a.residue.name for a in atoms if a.residue.name not in PEPTIDE_RESIDUES})
        if others:
            raise ValueError(
                f"the model {model_name!r} is for peptides of the 20 amino acids; the Topology "
                f"has other residues: {', '.join(others[:10])} (remove solvent and ligands)"
            )
        labels = [atom.name for atom in atoms]
    else:
        labels = [residue_atom_label(atom) for atom in atoms]
    if scheme != "element":
        _check_peptide_atom_elements(atoms)
    index = {label: code for code, label in enumerate(vocabulary)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(
            f"atoms not in the vocabulary of model {model_name!r} "
            f"({scheme} scheme): {', '.join(unknown[:10])}" + (" ..." if len(unknown) > 10 else "")
        )
    if scheme == "residue-atom" and len(set(labels)) != len(labels):
        raise ValueError("the Topology has atoms with the same residue and atom name")
    return np.array([index[label] for label in labels], dtype=np.int64)


def _element_symbol(atom: app.topology.Atom) -> str:
    """The ``element`` scheme's type of an atom (``?`` for one without an element)."""
    return atom.element.symbol if atom.element is not None else "?"


def _check_peptide_atom_elements(atoms: list[app.topology.Atom]) -> None:
    """Refuse peptide atoms whose name contradicts their element (a name swap such as N <-> CA
    would otherwise give the model other atoms than it names, and acceptance zero)."""
    wrong = [
        f"{residue_atom_label(atom)} is {atom.element.symbol}"
        for atom in atoms
        if atom.residue.name in PEPTIDE_RESIDUES
        and atom.element is not None
        and not atom.name.lstrip("0123456789").upper().startswith(atom.element.symbol.upper())
    ]
    if wrong:
        raise ValueError(
            "atom names do not fit their elements (in amino acids a name starts with its "
            f"element): {', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}; fix the names"
        )


def chiral_centres(topology: app.Topology) -> list[tuple[int, int, int, int]]:
    """``(CA, N, C, CB)`` atom indices of every residue that has all four (non-Gly amino acids).

    The integrator keeps the sign of ``dot(b - a, cross(c - a, d - a))`` for each quadruple
    ``(a, b, c, d)``, so no proposal inverts an L-amino acid into a D one.
    """
    centres = []
    for residue in topology.residues():
        by_name = {atom.name: atom.index for atom in residue.atoms()}
        if all(name in by_name for name in ("CA", "N", "C", "CB")):
            centres.append(tuple(by_name[name] for name in ("CA", "N", "C", "CB")))
    return centres
