"""Atoms the force field cannot tell apart, and a labelling of them chosen from the geometry.

Tools label the hydrogens of a methyl, an NH3+ or a CH2 group (and the partners of a guanidinium
or an amide) in either order. A proposal that learned one labelling gives the other a density
near zero, so a chain started from a structure labelled the other way accepts nothing. The
remedy here: the proposal sees every structure in one *canonical labelling*, chosen from its
geometry, and hands back its proposal in the caller's labels (docs/contract.md, "Equivalent
atoms", has why the chain stays exact).

:func:`find_equivalent_groups` finds the groups in a molecule's bond graph: neighbours of one
atom (the parent) with the same element whose branches (what hangs off them, away from the
parent) are acyclic and isomorphic. Each group has a *handedness*, a number that exchanging two
of its members negates and that continuous motion of the molecule never changes:

- three members (CH3, NH3+): the triple product of the member-parent vectors (their cyclic order
  around the parent bond; cyclic relabelling is what rotation of the group does);
- two members at an atom with four neighbours (CH2, Val CG1/CG2, Leu CD1/CD2): the triple product
  of the two members and a third neighbour around the parent (the parent's chirality);
- two members at a planar atom whose other neighbour is planar too, so that the bond between them
  is conjugated and slow to turn (Arg NH1/NH2 and their hydrogens, Asn/Gln amide hydrogens):
  which member is on the side of a reference atom, ``(m1 - m2) . (d - r)``.

Two members at a planar atom bonded to a tetrahedral one (carboxylate oxygens) are left alone:
that bond turns freely, so training data hold both labellings.

:class:`EquivalentAtomLabels` holds the groups and their reference handedness (that of the
model's training data) and computes, for a batch of structures, the permutation that gives each
group its reference handedness (exchanging two members, with their branches, where it differs).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

_TRIPLE = 0
_SIDE = 1


@dataclass(frozen=True)
class EquivalentGroup:
    """Interchangeable atoms bonded to one parent (atom indices of the Topology).

    ``test`` holds four atoms ``(a, b, c, d)`` of the handedness: the triple product
    ``(a - d) . ((b - d) x (c - d))`` when ``kind`` is ``"triple"``, ``(a - b) . (c - d)`` when it
    is ``"side"``. ``swap`` is the permutation (a full index vector) that exchanges two members and
    their branches; it negates the handedness.
    """

    kind: str
    parent: int
    members: tuple[int, ...]
    test: tuple[int, int, int, int]
    swap: tuple[int, ...]


def _branch(neighbours: list[set[int]], member: int, parent: int) -> set[int] | None:
    """Atoms reachable from ``member`` without passing ``parent``; None if that is not a tree."""
    seen = {member}
    stack = [member]
    edges = 0
    while stack:
        atom = stack.pop()
        for other in neighbours[atom]:
            if other == parent and atom == member:
                continue
            if other == parent:
                return None
            edges += 1
            if other not in seen:
                seen.add(other)
                stack.append(other)
    # Each tree edge was seen from both ends.
    return seen if edges == 2 * (len(seen) - 1) else None


def _shape(neighbours: list[set[int]], elements: Sequence[str], atom: int, came_from: int) -> str:
    """A canonical string of the element-labelled tree hanging off ``atom``."""
    below = sorted(
        _shape(neighbours, elements, other, atom)
        for other in neighbours[atom]
        if other != came_from
    )
    return elements[atom] + "(" + ",".join(below) + ")"


def _matching(
    neighbours: list[set[int]], elements: Sequence[str], a: int, b: int, came_a: int, came_b: int
) -> list[tuple[int, int]]:
    """Atom pairs that map the branch of ``a`` onto the isomorphic branch of ``b``."""

    def children(atom: int, came_from: int) -> list[int]:
        below = [other for other in neighbours[atom] if other != came_from]
        return sorted(below, key=lambda other: (_shape(neighbours, elements, other, atom), other))

    pairs = [(a, b)]
    for child_a, child_b in zip(children(a, came_a), children(b, came_b), strict=True):
        pairs += _matching(neighbours, elements, child_a, child_b, a, b)
    return pairs


def find_equivalent_groups(
    neighbours: list[set[int]], elements: Sequence[str]
) -> list[EquivalentGroup]:
    """The groups of interchangeable atoms of a molecule (module docstring), outer groups first,
    from its bond graph (each atom's neighbours) and element symbols.

    A group inside another one's branch (a methyl's hydrogens in Val CG1) comes after it, so that
    its handedness is judged after the outer group is labelled.
    """
    num_atoms = len(elements)
    found: list[tuple[EquivalentGroup, set[int]]] = []
    for parent in range(num_atoms):
        degree = len(neighbours[parent])
        by_shape: dict[str, list[int]] = {}
        for member in sorted(neighbours[parent]):
            if _branch(neighbours, member, parent) is not None:
                key = _shape(neighbours, elements, member, parent)
                by_shape.setdefault(key, []).append(member)
        for members in by_shape.values():
            others = sorted(set(neighbours[parent]) - set(members))
            if len(members) == 3 and degree == 4:
                kind, test, pair = "triple", (members[0], members[1], members[2], parent), (1, 2)
            elif len(members) == 2 and degree == 4:
                kind, test, pair = "triple", (members[0], members[1], others[0], parent), (0, 1)
            elif len(members) == 2 and degree == 3 and len(neighbours[others[0]]) == 3:
                anchor = others[0]
                reference = min(
                    neighbours[anchor] - {parent}, key=lambda a: (elements[a] == "H", a)
                )
                kind, test, pair = "side", (members[0], members[1], reference, anchor), (0, 1)
            else:
                continue
            swap = list(range(num_atoms))
            first, second = members[pair[0]], members[pair[1]]
            for a, b in _matching(neighbours, elements, first, second, parent, parent):
                swap[a], swap[b] = b, a
            branches = set()
            for member in members:
                branches |= _branch(neighbours, member, parent) or set()
            group = EquivalentGroup(kind, parent, tuple(members), test, tuple(swap))
            found.append((group, branches))
    # Depth: how many other groups' branches hold this group's parent.
    depth = [sum(group.parent in other for _, other in found) for group, _ in found]
    order = sorted(range(len(found)), key=lambda i: (depth[i], found[i][0].parent))
    return [found[i][0] for i in order]


def _handedness(x: torch.Tensor, atoms: torch.Tensor, is_side: torch.Tensor) -> torch.Tensor:
    """Handedness of one group in each structure: ``x [B, N, 3]``, ``atoms [B, 4]`` indices."""
    a, b, c, d = x.gather(1, atoms.unsqueeze(-1).expand(-1, -1, 3)).unbind(1)
    triple = ((a - d) * torch.linalg.cross(b - d, c - d)).sum(-1)
    side = ((a - b) * (c - d)).sum(-1)
    return torch.where(is_side, side, triple)


class EquivalentAtomLabels(torch.nn.Module):
    """The canonical labelling of equivalent atoms (module docstring), TorchScript-able.

    ``forward(x [B, N, 3]) -> permutation [B, N]``: ``x[b, permutation[b]]`` is structure ``b`` in
    the canonical labelling, every group with its reference handedness. Built without groups it
    is the identity (labels taken as given).
    """

    num_groups: int
    parents: list[int]

    def __init__(self, groups: Sequence[EquivalentGroup], num_atoms: int) -> None:
        super().__init__()
        self.num_groups = len(groups)
        self.parents = [group.parent for group in groups]
        self.register_buffer(
            "tests", torch.tensor([g.test for g in groups], dtype=torch.int64).reshape(-1, 4)
        )
        self.register_buffer(
            "is_side", torch.tensor([g.kind == "side" for g in groups], dtype=torch.bool)
        )
        self.register_buffer(
            "swaps",
            torch.tensor([g.swap for g in groups], dtype=torch.int64).reshape(-1, num_atoms),
        )
        self.register_buffer("identity", torch.arange(num_atoms))
        self.register_buffer("reference", torch.ones(len(groups), dtype=torch.float64))

    def set_reference(self, frames: torch.Tensor) -> None:
        """Take the reference handedness of every group from ``frames [F, N, 3]`` in their own
        labels (the training data's: their majority, which for groups that never change
        handedness in MD is that of every frame)."""
        x = frames.to(torch.float64)
        signs = []
        for g in range(self.num_groups):
            atoms = self.tests[g].expand(x.shape[0], 4)
            value = torch.sign(_handedness(x, atoms, self.is_side[g].expand(x.shape[0]))).sum()
            if float(value) == 0.0:
                raise ValueError(
                    f"the reference frames do not decide the labelling of the group at atom "
                    f"{self.parents[g]}"
                )
            signs.append(1.0 if float(value) > 0 else -1.0)
        self.reference = torch.tensor(signs, dtype=torch.float64).reshape(-1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        # Checkpoints and training folders written before equivalent atoms were labelled hold
        # none of these buffers: keep the labelling this model was built with.
        if not any(key.startswith(prefix) for key in state_dict):
            for name, buffer in self._buffers.items():
                state_dict[prefix + name] = buffer
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        permutation = self.identity.expand(x.shape[0], -1)
        for g in range(self.num_groups):
            atoms = permutation[:, self.tests[g]]
            value = _handedness(x, atoms, self.is_side[g].expand(x.shape[0]))
            flip = value * self.reference[g] < 0.0
            permutation = torch.where(
                flip.unsqueeze(-1), permutation[:, self.swaps[g]], permutation
            )
        return permutation
