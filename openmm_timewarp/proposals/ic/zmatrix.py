"""Z-matrix internal coordinates of a molecule, built from its bond graph.

:func:`build_zmatrix` turns an OpenMM Topology into a Z-matrix: a spanning tree of the bond graph
rooted at a terminal heavy atom (or at a peptide's N-terminal N where a ring holds it: proline),
heavy atoms first (breadth first), hydrogens after them. Every atom ``i`` after the first is placed
from a bond to its parent ``j``; from the third atom on also from the angle ``i-j-k``; from the
fourth on also from the torsion ``i-j-k-t``. Where ``j`` already holds a placed child ``s`` (a
sibling of ``i``), the torsion is taken relative to it (``t = s``, as bgflow does): around an sp3 or
sp2 centre that torsion is nearly fixed, so only genuine rotors (backbone phi/psi, side-chain chi,
methyl rotors) stay free. Otherwise it follows the chain.

:class:`InternalCoordinateTransform` converts batches of Cartesian positions to internal coordinates
``[bonds (N-1), angles (N-2), torsions (N-3)]`` plus the external frame (origin at the first atom,
first axis along the first bond, second in the plane of the first three atoms), and back. Atoms
are placed level by level of the Z-matrix tree: all atoms whose references are placed, at once.
Ring bonds that the tree does not hold close by themselves in an exact round trip, but a proposal
that changes ring torsions independently strains them: ring torsions need joint modelling.

The volume element of the map is ``dx = J dq d(frame)`` with
``log J = 2 sum log r + sum log sin(theta)`` over all bonds and angles (the frame's own measure,
which a proposal keeping the frame never changes, left out).
"""

import copy
from collections import deque
from dataclasses import dataclass

import torch
from openmm import app

from openmm_timewarp.models.metadata import residue_atom_label
from openmm_timewarp.proposals.ic.equivalent import EquivalentGroup, find_equivalent_groups


@dataclass(frozen=True)
class ZMatrix:
    """A Z-matrix over the atoms of one Topology, tied to them by residue-atom labels.

    ``labels[a]`` is the ``residue_atom_label`` of atom ``a`` (Topology order). ``rows`` lists the
    Z-matrix rows in placement order as ``(atom, bond ref, angle ref, torsion ref)`` with ``-1`` for
    references a row does not have (rows 0, 1, 2). Rows from 3 on are sorted by ``levels``: the
    placement level of the row (one more than the highest level of its references; rows 0-2 are
    level 0), so each level can be placed in one batched operation. ``equivalent_groups`` are the
    atoms the force field cannot tell apart (``openmm_timewarp.proposals.ic.equivalent``).
    """

    labels: tuple[str, ...]
    rows: tuple[tuple[int, int, int, int], ...]
    levels: tuple[int, ...]
    heavy: tuple[bool, ...]
    equivalent_groups: tuple[EquivalentGroup, ...] = ()

    @property
    def num_atoms(self) -> int:
        return len(self.labels)

    @property
    def num_internal(self) -> int:
        """Number of internal coordinates, ``3N - 6``."""
        return 3 * self.num_atoms - 6

    def sibling_torsions(self) -> list[bool]:
        """For each torsion (row 3 on), whether its reference is a sibling on the same parent."""
        parents = {row[0]: row[1] for row in self.rows}
        return [parents.get(row[3]) == row[1] for row in self.rows[3:]]

    def coordinate_names(self) -> list[str]:
        """Readable names of the internal coordinates in their vector order."""
        label = self.labels
        names = [f"bond {label[a]}-{label[j]}" for a, j, _, _ in self.rows[1:]]
        names += [f"angle {label[a]}-{label[j]}-{label[k]}" for a, j, k, _ in self.rows[2:]]
        names += [
            f"torsion {label[a]}-{label[j]}-{label[k]}-{label[m]}" for a, j, k, m in self.rows[3:]
        ]
        return names


def bond_graph(topology: app.Topology) -> list[set[int]]:
    """Each atom's bonded neighbours (from residue templates if the Topology has no bonds)."""
    if not any(True for _ in topology.bonds()):
        # A Topology read from coordinates alone has no bonds; derive them from residue templates
        # on a copy so the caller's Topology is left as it was.
        topology = copy.deepcopy(topology)
        topology.createStandardBonds()
    neighbours: list[set[int]] = [set() for _ in range(topology.getNumAtoms())]
    for bond in topology.bonds():
        a, b = bond[0].index, bond[1].index
        neighbours[a].add(b)
        neighbours[b].add(a)
    return neighbours


def ring_bonds(neighbours: list[set[int]]) -> set[frozenset[int]]:
    """Bonds on a ring: their atoms stay connected when the bond itself is removed."""
    rings = set()
    for a, bonded in enumerate(neighbours):
        for b in bonded:
            if a > b:
                continue
            seen, frontier = {a}, [a]
            while frontier and b not in seen:
                atom = frontier.pop()
                for nxt in neighbours[atom]:
                    if nxt not in seen and {atom, nxt} != {a, b}:
                        seen.add(nxt)
                        frontier.append(nxt)
            if b in seen:
                rings.add(frozenset((a, b)))
    return rings


def build_zmatrix(topology: app.Topology) -> ZMatrix:
    """The Z-matrix of a single molecule from its Topology's bond graph.

    Raises ValueError for fewer than three atoms, a bond graph that is not connected, or a hydrogen
    that is not bonded to exactly one heavy atom.
    """
    atoms = list(topology.atoms())
    num_atoms = len(atoms)
    if num_atoms < 3:
        raise ValueError(
            f"internal coordinates need at least 3 atoms, the Topology has {num_atoms}"
        )
    labels = tuple(residue_atom_label(atom) for atom in atoms)
    if len(set(labels)) != num_atoms:
        raise ValueError("the Topology has atoms with the same residue index and atom name")
    neighbours = bond_graph(topology)
    heavy = tuple(atom.element is None or atom.element.symbol != "H" for atom in atoms)
    heavy_atoms = [a for a in range(num_atoms) if heavy[a]]
    if not heavy_atoms:
        raise ValueError("the Topology has no heavy atoms to root the Z-matrix at")

    # Root at the first terminal heavy atom so that the first bonds follow the chain; a peptide
    # whose first atom is its N-terminal N in a ring (proline) roots there too, since rooting at
    # the first residue's O would place the next N by a torsion about C=O, so psi would not be a
    # sum of torsions about its own bond.
    def heavy_degree(a: int) -> int:
        return sum(heavy[b] for b in neighbours[a])

    first = heavy_atoms[0]
    if atoms[first].name == "N" and atoms[first].residue.index == 0:
        root = first
    else:
        root = next((a for a in heavy_atoms if heavy_degree(a) == 1), first)
    parent = {root: -1}
    order = [root]
    queue = deque([root])
    while queue:
        a = queue.popleft()
        for b in sorted(neighbours[a]):
            if heavy[b] and b not in parent:
                parent[b] = a
                order.append(b)
                queue.append(b)
    if len(order) != len(heavy_atoms):
        raise ValueError("the heavy atoms' bond graph is not connected: give one molecule")
    rank = {a: position for position, a in enumerate(order)}
    hydrogens = []
    for a in range(num_atoms):
        if heavy[a]:
            continue
        bonded = [b for b in neighbours[a] if heavy[b]]
        if len(bonded) != 1:
            raise ValueError(
                f"hydrogen {labels[a]} is bonded to {len(bonded)} heavy atoms; expected exactly one"
            )
        parent[a] = bonded[0]
        hydrogens.append(a)
    order += sorted(hydrogens, key=lambda a: (rank[parent[a]], a))
    rank = {a: position for position, a in enumerate(order)}
    children: dict[int, list[int]] = {a: [] for a in order}
    for a in order[1:]:
        children[parent[a]].append(a)

    rows = []
    for position, atom in enumerate(order):
        j = parent[atom]
        k = t = -1
        if position >= 2:
            k = parent[j] if parent[j] >= 0 else order[1]
        if position >= 3:
            siblings = [s for s in children[j] if rank[s] < position and s != k]
            if siblings:
                t = siblings[0]
            elif parent[k] >= 0 and parent[k] != j:
                t = parent[k]
            else:
                candidates = [s for s in children[k] if rank[s] < position and s not in (j, atom)]
                if not candidates:
                    raise ValueError(f"no torsion reference for atom {labels[atom]}")
                t = candidates[0]
        rows.append((atom, j, k, t))

    level = {row[0]: 0 for row in rows[:3]}
    for atom, j, k, t in rows[3:]:
        level[atom] = 1 + max(level[j], level[k], level[t])
    placed = rows[:3] + sorted(rows[3:], key=lambda row: level[row[0]])
    return ZMatrix(
        labels=labels,
        rows=tuple(placed),
        levels=tuple(level[row[0]] for row in placed),
        heavy=heavy,
        equivalent_groups=tuple(
            find_equivalent_groups(
                neighbours, [atom.element.symbol if atom.element else "" for atom in atoms]
            )
        ),
    )


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / torch.linalg.vector_norm(vector, dim=-1, keepdim=True)


def bond_lengths(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(a - b, dim=-1)


def bond_angles(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Angle a-b-c at b in radians (atan2 form, accurate near 0 and pi)."""
    u = a - b
    v = c - b
    return torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(u, v), dim=-1), (u * v).sum(-1))


def torsion_angles(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor
) -> torch.Tensor:
    """Dihedral a-b-c-d in radians in [-pi, pi], IUPAC sign convention (as mdtraj)."""
    b0 = a - b
    axis = _unit(c - b)
    b2 = d - c
    v = b0 - (b0 * axis).sum(-1, keepdim=True) * axis
    w = b2 - (b2 * axis).sum(-1, keepdim=True) * axis
    return torch.atan2((torch.linalg.cross(axis, v) * w).sum(-1), (v * w).sum(-1))


class InternalCoordinateTransform(torch.nn.Module):
    """Batched Cartesian <-> internal coordinates of one Z-matrix (TorchScript-able).

    ``to_internal(x[B, N, 3]) -> (q[B, 3N-6], origin[B, 3], rotation[B, 3, 3])`` and
    ``to_cartesian(q, origin, rotation) -> x``; the columns of ``rotation`` are the frame axes.
    Works in the dtype of its inputs.
    """

    num_atoms: int
    num_bonds: int
    num_angles: int
    num_torsions: int
    atom0: int
    atom1: int
    atom2: int
    atom2_on_root: bool
    level_offsets: list[int]
    level_sizes: list[int]

    def __init__(self, zmatrix: ZMatrix) -> None:
        super().__init__()
        rows = torch.tensor(zmatrix.rows, dtype=torch.int64)
        self.num_atoms = zmatrix.num_atoms
        self.num_bonds = self.num_atoms - 1
        self.num_angles = self.num_atoms - 2
        self.num_torsions = self.num_atoms - 3
        self.atom0 = int(rows[0, 0])
        self.atom1 = int(rows[1, 0])
        self.atom2 = int(rows[2, 0])
        # Atom 2 hangs either off atom 0 (angle 2-0-1) or off atom 1 (angle 2-1-0).
        self.atom2_on_root = int(rows[2, 1]) == self.atom0
        self.register_buffer("row_atoms", rows[:, 0].clone())
        self.register_buffer("bond_refs", rows[1:, 1].clone())
        self.register_buffer("angle_refs", rows[2:, 2].clone())
        self.register_buffer("placed", rows[3:, 0].clone())
        self.register_buffer("ref_j", rows[3:, 1].clone())
        self.register_buffer("ref_k", rows[3:, 2].clone())
        self.register_buffer("ref_l", rows[3:, 3].clone())
        levels = list(zmatrix.levels[3:])
        # Start offsets of each placement level among rows 3.., plus the end.
        self.level_offsets = [
            i for i in range(len(levels)) if i == 0 or levels[i] != levels[i - 1]
        ] + [len(levels)]
        self.level_sizes = [
            end - start
            for start, end in zip(self.level_offsets[:-1], self.level_offsets[1:], strict=True)
        ]
        # The torsion, angle and bond references of each level's rows, level by level (the rows
        # from start to end at 3 * start to 3 * end), so a level gathers them in one operation;
        # derived from the rows, so not in the state dict (models saved before it still load).
        references = [
            rows[3 + start : 3 + end, column]
            for start, end in zip(self.level_offsets[:-1], self.level_offsets[1:], strict=True)
            for column in (3, 2, 1)
        ]
        self.register_buffer(
            "level_references",
            torch.cat(references) if references else rows[3:, 0].clone(),
            persistent=False,
        )

    @torch.jit.export
    def to_internal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        atoms = self.row_atoms
        bonds = bond_lengths(x[:, atoms[1:]], x[:, self.bond_refs])
        angles = bond_angles(x[:, atoms[2:]], x[:, self.bond_refs[1:]], x[:, self.angle_refs])
        torsions = torsion_angles(
            x[:, self.placed], x[:, self.ref_j], x[:, self.ref_k], x[:, self.ref_l]
        )
        origin = x[:, self.atom0]
        e1 = _unit(x[:, self.atom1] - origin)
        in_plane = x[:, self.atom2] - origin
        e2 = _unit(in_plane - (in_plane * e1).sum(-1, keepdim=True) * e1)
        e3 = torch.linalg.cross(e1, e2)
        rotation = torch.stack([e1, e2, e3], dim=-1)
        return torch.cat([bonds, angles, torsions], dim=-1), origin, rotation

    @torch.jit.export
    def split(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(bonds, angles, torsions)`` views of an internal-coordinate vector."""
        nb = self.num_bonds
        na = self.num_angles
        return q[..., :nb], q[..., nb : nb + na], q[..., nb + na :]

    @torch.jit.export
    def to_cartesian(
        self, q: torch.Tensor, origin: torch.Tensor, rotation: torch.Tensor
    ) -> torch.Tensor:
        bonds, angles, torsions = self.split(q)
        batch = q.shape[0]
        zero = torch.zeros_like(bonds[:, 0])
        r1 = bonds[:, 0]
        r2 = bonds[:, 1]
        theta2 = angles[:, 0]
        x2_along = r2 * torch.cos(theta2)
        if not self.atom2_on_root:
            x2_along = r1 - x2_along
        local = torch.zeros(batch, self.num_atoms, 3, dtype=q.dtype, device=q.device)
        first_three = torch.stack(
            [
                torch.stack([zero, zero, zero], dim=-1),
                torch.stack([r1, zero, zero], dim=-1),
                torch.stack([x2_along, r2 * torch.sin(theta2), zero], dim=-1),
            ],
            dim=1,
        )
        local = local.index_copy(1, self.row_atoms[:3], first_three)
        # Atom d with |d - c| = bond, angle d-c-b = angle and dihedral a-b-c-d = torsion (NeRF) is
        # c + [bc, m, n] @ (-r cos(angle), r sin(angle) cos(torsion), r sin(angle) sin(torsion))
        # in the frame bc (along b -> c), n (normal to the a-b-c plane), m = n x bc. The
        # coefficients need no placed positions, so they are computed once for all rows, which
        # keeps the work per level of the tree (run one level after another) to a few
        # elementwise operations.
        placed_bonds = bonds[:, 2:].unsqueeze(-1)
        placed_angles = angles[:, 1:].unsqueeze(-1)
        placed_torsions = torsions.unsqueeze(-1)
        radial = placed_bonds * torch.sin(placed_angles)
        along_bc = -placed_bonds * torch.cos(placed_angles)
        along_m = radial * torch.cos(placed_torsions)
        along_n = radial * torch.sin(placed_torsions)
        # Each level's parts split off at once: slicing them level by level costs more ops.
        sizes = self.level_sizes
        bc_parts = along_bc.split(sizes, 1)
        m_parts = along_m.split(sizes, 1)
        n_parts = along_n.split(sizes, 1)
        placed_parts = self.placed.split(sizes)
        reference_parts = self.level_references.split([3 * size for size in sizes])
        for level in range(len(sizes)):
            references = local.index_select(1, reference_parts[level])
            a, b, c = references.view(batch, 3, sizes[level], 3).unbind(1)
            bc = _unit(c - b)
            normal = _unit(torch.linalg.cross(b - a, bc))
            new = c + (
                bc_parts[level] * bc
                + m_parts[level] * torch.linalg.cross(normal, bc)
                + n_parts[level] * normal
            )
            local = local.index_copy(1, placed_parts[level], new)
        return origin.unsqueeze(1) + local @ rotation.transpose(1, 2)

    @torch.jit.export
    def log_det_jacobian(self, q: torch.Tensor) -> torch.Tensor:
        """``2 sum log r + sum log sin(theta)``: log dx / (dq d(frame)) but for the frame's term."""
        bonds, angles, _ = self.split(q)
        return 2.0 * torch.log(bonds).sum(-1) + torch.log(torch.sin(angles)).sum(-1)
