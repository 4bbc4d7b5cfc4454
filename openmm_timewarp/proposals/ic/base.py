"""The base of proposals on the internal coordinates of one Z-matrix, and their one
``forward_chains``.

A proposal keeps the current state's external frame (first atom, first bond direction, first
plane), so in Cartesian space

    logQRatio = log q(i | i') - log q(i' | i) + log J(i') - log J(i),

with ``log J = 2 sum log r + sum log sin(theta)`` (the frame's own measure cancels). Each family
supplies the first difference (``propose_internal``); :class:`ZMatrixProposal` does the rest. It
consumes ``noise_dim = 3`` normal numbers per atom.

The models carry the residue-atom labels of the Topology they were built from; the integrator passes
``atom_types`` as indices into that vocabulary (``atom_types_for_topology``), and the model reorders
positions through that permutation, so a System whose atoms come in another order is proposed for
correctly. Anything but a permutation of the vocabulary is refused.

Atoms the force field cannot tell apart (a methyl's hydrogens, an arginine's NH2 groups) are seen
in one canonical labelling chosen from the geometry (``openmm_timewarp.proposals.ic.equivalent``):
the model proposes for the state so relabelled and hands the proposal back in the caller's
labels; a proposal whose own canonical labelling differs gets logQRatio ``-inf``
(docs/contract.md, "Equivalent atoms", has why this is exact).
"""

import math

import torch

from openmm_timewarp.proposals.base import ChainBatchedProposal
from openmm_timewarp.proposals.ic.equivalent import EquivalentAtomLabels
from openmm_timewarp.proposals.ic.zmatrix import InternalCoordinateTransform, ZMatrix

NOISE_DIM = 3


class ZMatrixProposal(ChainBatchedProposal):
    """Shared parts of proposals on one Z-matrix: the transform, the atom permutation, the
    canonical labelling of equivalent atoms, and ``forward_chains`` itself.

    ``forward_chains`` is one template for every family: the state's internal coordinates in its
    canonical labelling, the family's :meth:`propose_internal` (new internal coordinates and
    ``log q(i | i') - log q(i' | i)``), the Jacobian of the map, ``-inf`` for a proposal outside
    the map's domain (a bond <= 0, an angle outside (0, pi)), and the proposals placed back in
    each chain's frame and labels.

    ``reference [F, N, 3]`` (nm, Z-matrix atom order; the training frames) sets the labelling the
    model sees (docs/contract.md, "Equivalent atoms"); without it, labels are taken as given.
    """

    noise_dim: int
    num_internal: int
    reject_relabelled: bool

    def __init__(self, zmatrix: ZMatrix, reference: torch.Tensor | None = None) -> None:
        super().__init__()
        groups = zmatrix.equivalent_groups if reference is not None else ()
        equivalent = EquivalentAtomLabels(groups, zmatrix.num_atoms)
        if reference is not None:
            equivalent.set_reference(reference)
        self.set_molecule(list(zmatrix.labels), InternalCoordinateTransform(zmatrix), equivalent)

    def set_molecule(
        self,
        labels: list[str],
        transform: InternalCoordinateTransform,
        equivalent: EquivalentAtomLabels,
    ) -> None:
        """The molecule proposed for: its residue-atom labels, Z-matrix transform and labelling
        of equivalent atoms (a mixture takes its component's own modules)."""
        self.labels = labels
        self.transform = transform
        self.noise_dim = NOISE_DIM
        self.num_internal = 3 * len(labels) - 6
        self.register_buffer("identity_order", torch.arange(len(labels)))
        self.equivalent = equivalent
        self.reject_relabelled = True

    def compute_dtype(self) -> torch.dtype:
        """The dtype internal coordinates are computed in."""
        return torch.float64

    def model_order(self, atom_types: torch.Tensor) -> torch.Tensor:
        """For each Z-matrix atom, the System atom that has its label (``atom_types`` inverted)."""
        if not torch.jit.is_scripting():  # TorchScript compiles no more of this branch
            if torch.compiler.is_exporting():
                return self._exported_model_order(atom_types)
        if atom_types.shape != self.identity_order.shape:
            raise ValueError(
                "atom_types must give one residue-atom type code per atom of the model's molecule"
            )
        if bool((atom_types < 0).any()) or bool((atom_types >= atom_types.shape[0]).any()):
            raise ValueError(
                "atom_types must name every atom of the model's molecule exactly once; build them "
                "with contract.atom_types_for_topology"
            )
        # The inverse permutation by a scatter: argsort costs a millisecond per call on CPU.
        order = torch.zeros_like(atom_types).scatter(0, atom_types, self.identity_order)
        if not torch.equal(atom_types[order], self.identity_order):
            raise ValueError(
                "atom_types must name every atom of the model's molecule exactly once; build them "
                "with contract.atom_types_for_topology"
            )
        return order

    @torch.jit.unused
    def _exported_model_order(self, atom_types: torch.Tensor) -> torch.Tensor:
        """``model_order`` for torch.export, which cannot branch on data: the indices are clamped
        (the compiled code must not scatter out of bounds) and the check becomes an assertion
        of the compiled code (all N labels found means a permutation, so no clamped index)."""
        clamped = atom_types.clamp(0, atom_types.shape[0] - 1)
        order = torch.zeros_like(atom_types).scatter(0, clamped, self.identity_order)
        torch._assert_async(
            (atom_types[order] == self.identity_order).all(),
            "atom_types must name every atom of the model's molecule exactly once",
        )
        return order

    def labelled_internal(
        self, positions: torch.Tensor, atom_types: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Internal coordinates and frame of System positions ``[B, N, 3]`` (batched) in the
        canonical labelling, and that labelling ``[B, N]``: for each Z-matrix atom, the model-order
        atom (``model_order``) whose position it took."""
        x = positions[:, self.model_order(atom_types)].to(self.compute_dtype())
        labelling = self.equivalent(x)
        canonical = x.gather(1, labelling.unsqueeze(-1).expand(-1, -1, 3))
        q, origin, rotation = self.transform.to_internal(canonical)
        return q, origin, rotation, labelling

    def internal(
        self, positions: torch.Tensor, atom_types: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Internal coordinates and frame of System positions ``[B, N, 3]`` (batched), in the
        canonical labelling."""
        q, origin, rotation, _ = self.labelled_internal(positions, atom_types)
        return q, origin, rotation

    def cartesian(
        self,
        q: torch.Tensor,
        origin: torch.Tensor,
        rotation: torch.Tensor,
        atom_types: torch.Tensor,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """System positions (atom order of ``atom_types``) of internal coordinates in a frame."""
        batch = q.shape[0]
        x = self.transform.to_cartesian(q, origin.expand(batch, 3), rotation.expand(batch, 3, 3))
        return x[:, atom_types].to(dtype)

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals ``[C, B, N, 3]`` and logQRatio ``[C, B]`` for chains ``[C, N, 3]``; the
        C * B proposals are computed as one batch, chain by chain."""
        num_proposals = noise.shape[1]
        q, origin, rotation, labelling = self.labelled_internal(positions, atom_types)
        q_new, log_q_ratio = self.propose_internal(q, noise)
        log_ratio = (
            log_q_ratio
            + self.transform.log_det_jacobian(q_new)
            - self.transform.log_det_jacobian(q).repeat_interleave(num_proposals)
        )
        bonds, angles, _ = self.transform.split(q_new)
        valid = (bonds > 0.0).all(-1) & (angles > 0.0).all(-1) & (angles < math.pi).all(-1)
        log_ratio = torch.where(valid, log_ratio, torch.full_like(log_ratio, -math.inf))
        return self.chain_outputs(
            q_new, log_ratio, origin, rotation, labelling, atom_types, noise.shape, positions.dtype
        )

    def propose_internal(
        self, q: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The family's move: for each chain's internal coordinates ``q [C, M]`` and the noise
        ``[C, B, N, noise_dim]``, the proposals' internal coordinates ``[C * B, M]`` (chain by
        chain) and ``log q(i | i') - log q(i' | i)`` ``[C * B]`` per unit volume of internal
        coordinates."""
        raise NotImplementedError

    def chain_outputs(
        self,
        q_new: torch.Tensor,
        log_ratio: torch.Tensor,
        origin: torch.Tensor,
        rotation: torch.Tensor,
        labelling: torch.Tensor,
        atom_types: torch.Tensor,
        noise_shape: list[int],
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward_chains``' outputs from the internal coordinates ``[C * B, M]`` and logQRatio
        ``[C * B]`` of all proposals (chain by chain), each chain's frame and labelling
        ``[C, ...]`` (``labelled_internal``): proposals ``[C, B, N, 3]`` placed in their chain's
        frame, back in the chain's own labels, and logQRatio ``[C, B]``, both in ``dtype`` (the
        positions'). A proposal whose canonical labelling differs from its chain's gets
        logQRatio ``-inf`` (rejected; docs/contract.md, "Equivalent atoms")."""
        num_chains, num_proposals, num_atoms = noise_shape[0], noise_shape[1], noise_shape[2]
        canonical = self.transform.to_cartesian(
            q_new,
            origin.repeat_interleave(num_proposals, dim=0),
            rotation.repeat_interleave(num_proposals, dim=0),
        )
        labels = labelling.repeat_interleave(num_proposals, dim=0)
        # Back to the chain's labels, rounded as the caller will see them.
        x = (
            torch.zeros_like(canonical)
            .scatter(1, labels.unsqueeze(-1).expand(-1, -1, 3), canonical)
            .to(dtype)
        )
        if self.reject_relabelled:
            same_labelling = (self.equivalent(x.to(canonical.dtype)) == labels).all(-1)
            log_ratio = torch.where(
                same_labelling, log_ratio, torch.full_like(log_ratio, -math.inf)
            )
        return (
            x[:, atom_types].reshape(num_chains, num_proposals, num_atoms, 3),
            log_ratio.reshape(num_chains, num_proposals).to(dtype),
        )
