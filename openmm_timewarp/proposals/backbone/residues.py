"""The backbone of a linear peptide: each amino acid's phi and psi atoms, which of them a Z-matrix
rotor turns (a *free* angle), and what the network reads of a residue and its neighbours.

``phi_i = dihedral(C_{i-1}, N_i, CA_i, C_i)`` and ``psi_i = dihedral(N_i, CA_i, C_i, N_{i+1})``
with the atoms found from the bond graph and the atom names (an ACE cap's C and an NME / NHE cap's
N count). At a zwitterionic terminus the angle is undefined: the NH3+ / COO- rotation stays an
ordinary rotor. An angle is free when the Z-matrix has a rotor about its central bond; proline's
phi lies in its ring, so it is defined but not free.
"""

from dataclasses import dataclass

import torch
from openmm import app

from openmm_timewarp.proposals.ic.zmatrix import ZMatrix, bond_graph
from openmm_timewarp.proposals.rotors.features import ROTOR, MoleculeFeatures

CAPS_BEFORE = frozenset({"ACE"})
CAPS_AFTER = frozenset({"NME", "NHE"})


@dataclass(frozen=True)
class ResidueBackbone:
    """One amino acid of the chain: its Topology residue, its neighbours along the chain (residue
    indices, -1 where absent), its phi / psi atoms (None where undefined) and the internal
    coordinate of the rotor that turns each (-1 where the angle is not free)."""

    residue: int
    before: int
    after: int
    phi_atoms: tuple[int, int, int, int] | None
    psi_atoms: tuple[int, int, int, int] | None
    phi_rotor: int
    psi_rotor: int

    @property
    def movable(self) -> bool:
        """Whether a backbone move redraws this residue (it has a free angle)."""
        return self.phi_rotor >= 0 or self.psi_rotor >= 0


def register_angle_buffers(module: torch.nn.Module, residues: list[ResidueBackbone]) -> None:
    """Buffers of the residues' backbone angles: ``phi_atoms`` and ``psi_atoms`` ``[E, 4]`` (a
    dummy quadruple where the angle is undefined), ``defined_phi``, ``defined_psi``, ``free_phi``
    and ``free_psi`` ``[E]``."""
    dummy = (0, 1, 2, 3)
    module.register_buffer("phi_atoms", torch.tensor([r.phi_atoms or dummy for r in residues]))
    module.register_buffer("psi_atoms", torch.tensor([r.psi_atoms or dummy for r in residues]))
    module.register_buffer("defined_phi", torch.tensor([r.phi_atoms is not None for r in residues]))
    module.register_buffer("defined_psi", torch.tensor([r.psi_atoms is not None for r in residues]))
    module.register_buffer("free_phi", torch.tensor([r.phi_rotor >= 0 for r in residues]))
    module.register_buffer("free_psi", torch.tensor([r.psi_rotor >= 0 for r in residues]))


def free_angle_rotors(residues: list[ResidueBackbone]) -> list[int]:
    """The internal coordinates of the residues' free angles: the phi rotors, then the psi ones."""
    return [r.phi_rotor for r in residues if r.phi_rotor >= 0] + [
        r.psi_rotor for r in residues if r.psi_rotor >= 0
    ]


def _named_atom(residue: app.Residue, name: str) -> int:
    for atom in residue.atoms():
        if atom.name == name:
            return atom.index
    raise ValueError(
        f"residue {residue.name}{residue.index + 1} has no backbone atom {name}: a peptide "
        "needs N, CA and C in every amino acid"
    )


def peptide_chain(topology: app.Topology) -> list[app.Residue]:
    """The residues in chain order (caps included); ValueError unless the Topology is one linear
    peptide: residues joined only by C-N peptide bonds into one unbranched, acyclic chain with at
    least one amino acid (each with N, CA and C), an ACE cap only first and an NME / NHE cap
    only last."""
    residues = list(topology.residues())
    if sum(1 for chain in topology.chains() if any(True for _ in chain.atoms())) > 1:
        raise ValueError("the Topology has several chains: give one linear peptide")
    neighbours = bond_graph(topology)
    atoms = list(topology.atoms())
    following: dict[int, int] = {}
    preceding: dict[int, int] = {}
    for a, bonded in enumerate(neighbours):
        for b in bonded:
            first, second = atoms[a], atoms[b]
            if first.residue.index == second.residue.index or a > b:
                continue
            if first.name == "N" and second.name == "C":
                first, second = second, first
            if not (first.name == "C" and second.name == "N"):
                raise ValueError(
                    f"residues {first.residue.name}{first.residue.index + 1} and "
                    f"{second.residue.name}{second.residue.index + 1} are joined by a bond that is "
                    f"not a peptide bond ({first.name}-{second.name}): give a linear peptide"
                )
            c_residue, n_residue = first.residue.index, second.residue.index
            if c_residue in following or n_residue in preceding:
                raise ValueError("the peptide's backbone is branched: give a linear peptide")
            following[c_residue] = n_residue
            preceding[n_residue] = c_residue
    starts = [r.index for r in residues if r.index not in preceding]
    if len(starts) != 1:
        raise ValueError("the peptide's backbone is cyclic or not connected: give a linear peptide")
    order = [starts[0]]
    while order[-1] in following:
        order.append(following[order[-1]])
    if len(order) != len(residues):
        raise ValueError("the peptide's backbone is cyclic or not connected: give a linear peptide")
    chain = [residues[r] for r in order]
    for position, residue in enumerate(chain):
        if residue.name in CAPS_BEFORE and position != 0:
            raise ValueError(f"an {residue.name} cap can only start the chain")
        if residue.name in CAPS_AFTER and position != len(chain) - 1:
            raise ValueError(f"an {residue.name} cap can only end the chain")
    if all(r.name in CAPS_BEFORE | CAPS_AFTER for r in chain):
        raise ValueError("the peptide has no amino acid")
    for residue in chain:
        if residue.name not in CAPS_BEFORE | CAPS_AFTER:
            for name in ("N", "CA", "C"):
                _named_atom(residue, name)
    return chain


def backbone_residues(
    topology: app.Topology, zmatrix: ZMatrix, features: MoleculeFeatures
) -> list[ResidueBackbone]:
    """Every amino acid of the linear peptide ``topology`` in chain order (``peptide_chain``'s
    errors for anything else); ValueError if no backbone angle is defined."""
    chain = peptide_chain(topology)
    rotor_of_bond = {
        frozenset((j, k)): row
        for row, ((_, j, k, _), kind) in enumerate(
            zip(features.coordinate_atoms.tolist(), features.coordinate_kinds.tolist(), strict=True)
        )
        if kind == ROTOR
    }
    result = []
    for position, residue in enumerate(chain):
        if residue.name in CAPS_BEFORE | CAPS_AFTER:
            continue
        n, ca, c = (_named_atom(residue, name) for name in ("N", "CA", "C"))
        before = chain[position - 1] if position > 0 else None
        after = chain[position + 1] if position + 1 < len(chain) else None
        phi = (_named_atom(before, "C"), n, ca, c) if before is not None else None
        psi = (n, ca, c, _named_atom(after, "N")) if after is not None else None
        result.append(
            ResidueBackbone(
                residue=residue.index,
                before=before.index if before is not None else -1,
                after=after.index if after is not None else -1,
                phi_atoms=phi,
                psi_atoms=psi,
                phi_rotor=rotor_of_bond.get(frozenset((n, ca)), -1) if phi else -1,
                psi_rotor=rotor_of_bond.get(frozenset((ca, c)), -1) if psi else -1,
            )
        )
    if not any(r.phi_atoms or r.psi_atoms for r in result):
        raise ValueError("the peptide has no backbone phi or psi angle (a single free amino acid)")
    return result


def residue_context(
    topology: app.Topology, residues: list[ResidueBackbone], features: MoleculeFeatures
) -> torch.Tensor:
    """``[E, 3, V]``: for each residue, the atom-name multi-hot of itself, the residue before and
    the residue after it (caps included; zeros where absent)."""
    by_residue = {atom.residue.index: atom.index for atom in topology.atoms()}
    rows = []
    for residue in residues:
        rows.append(
            torch.stack(
                [
                    features.residue_names[by_residue[index]]
                    if index >= 0
                    else torch.zeros(features.residue_names.shape[1])
                    for index in (residue.residue, residue.before, residue.after)
                ]
            )
        )
    return torch.stack(rows)
