"""What the rotor network reads of a molecule: atom names, bond-graph features and the kind of
each internal coordinate of its Z-matrix (bond, angle, fixed torsion or rotor).

A rotor is a Z-matrix torsion that is not taken relative to a sibling and whose bond is in no ring;
the backbone's N-CA, CA-C and C-N rotors are the slow ones (:func:`backbone_rotors`).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from openmm import app

from openmm_timewarp.models.metadata import atom_type_codes
from openmm_timewarp.proposals.ic.zmatrix import ZMatrix, bond_graph, ring_bonds

FAMILY = "ic-rotor"
ELEMENTS = ("H", "C", "N", "O", "S")
#: Kinds of internal coordinate; the network tells them apart.
BOND, ANGLE, FIXED_TORSION, ROTOR = range(4)
GRAPH_FEATURES = len(ELEMENTS) + 3
#: Atom names of the backbone bonds whose rotors are the slow ones (phi, psi, omega).
BACKBONE_BONDS = frozenset({frozenset(("N", "CA")), frozenset(("CA", "C")), frozenset(("C", "N"))})


@dataclass(frozen=True)
class MoleculeFeatures:
    """What :class:`RotorNetwork` reads of one molecule, in Z-matrix coordinate order."""

    names: torch.Tensor  # [N] peptide-atom code of each atom (Topology order)
    graph: torch.Tensor  # [N, GRAPH_FEATURES]
    residue_names: torch.Tensor  # [N, V] the atom names of each atom's residue (0/1)
    coordinate_atoms: torch.Tensor  # [M, 4] atoms of each coordinate, -1 where it has fewer
    coordinate_kinds: torch.Tensor  # [M] BOND, ANGLE, FIXED_TORSION or ROTOR


def peptide_atom_codes(topology: app.Topology, vocabulary: Sequence[str]) -> torch.Tensor:
    """The ``peptide-atom`` code of every atom; ValueError for residues that are not peptide."""
    return torch.from_numpy(atom_type_codes(topology, "peptide-atom", vocabulary, FAMILY))


def molecule_features(
    topology: app.Topology, zmatrix: ZMatrix, vocabulary: Sequence[str]
) -> MoleculeFeatures:
    """The network's inputs for ``topology`` and its Z-matrix (``vocabulary``: peptide-atom names).

    Raises ValueError (from the ``peptide-atom`` scheme) for atoms that are not peptide atoms.
    """
    names = peptide_atom_codes(topology, vocabulary)
    atoms = list(topology.atoms())
    neighbours = bond_graph(topology)
    rings = ring_bonds(neighbours)
    heavy = [atom.element is not None and atom.element.symbol != "H" for atom in atoms]
    graph = torch.zeros(len(atoms), GRAPH_FEATURES)
    for atom in atoms:
        a = atom.index
        symbol = atom.element.symbol if atom.element is not None else ""
        if symbol in ELEMENTS:
            graph[a, ELEMENTS.index(symbol)] = 1.0
        graph[a, len(ELEMENTS)] = sum(heavy[b] for b in neighbours[a]) / 4.0
        graph[a, len(ELEMENTS) + 1] = sum(not heavy[b] for b in neighbours[a]) / 3.0
        graph[a, len(ELEMENTS) + 2] = float(any(frozenset((a, b)) in rings for b in neighbours[a]))
    residue_names = torch.zeros(len(atoms), len(vocabulary))
    for residue in topology.residues():
        members = [atom.index for atom in residue.atoms()]
        for a in members:
            residue_names[a, names[members]] = 1.0
    rows = zmatrix.rows
    sibling = [False, False, False] + zmatrix.sibling_torsions()
    coordinate_atoms, kinds = [], []
    for a, j, _, _ in rows[1:]:
        coordinate_atoms.append((a, j, -1, -1))
        kinds.append(BOND)
    for a, j, k, _ in rows[2:]:
        coordinate_atoms.append((a, j, k, -1))
        kinds.append(ANGLE)
    for row, (a, j, k, t) in enumerate(rows[3:], start=3):
        rotor = not sibling[row] and frozenset((j, k)) not in rings
        coordinate_atoms.append((a, j, k, t))
        kinds.append(ROTOR if rotor else FIXED_TORSION)
    return MoleculeFeatures(
        names=names,
        graph=graph,
        residue_names=residue_names,
        coordinate_atoms=torch.tensor(coordinate_atoms, dtype=torch.int64),
        coordinate_kinds=torch.tensor(kinds, dtype=torch.int64),
    )


def backbone_rotors(topology: app.Topology, features: MoleculeFeatures) -> torch.Tensor:
    """For each rotor (in coordinate order), whether its bond is a backbone N-CA, CA-C or C-N."""
    names = [atom.name for atom in topology.atoms()]
    rotors = features.coordinate_atoms[features.coordinate_kinds == ROTOR]
    return torch.tensor(
        [frozenset((names[j], names[k])) in BACKBONE_BONDS for _, j, k, _ in rotors.tolist()],
        dtype=torch.bool,
    )
