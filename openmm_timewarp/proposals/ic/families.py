"""Proposal models on internal coordinates that meet the proposal-model contract (docs/contract.md).

Three families share one Z-matrix and one parametrisation (bonds and angles scaled from bounded
intervals to [0, 1], torsions from the circle to [0, 1)):

- :class:`ICConditionalProposal`: a spline flow ``q(i' | i)`` conditioned on the current internal
  coordinates (family ``"ic-conditional"``, trained on pairs ``(x(t), x(t + tau))``);
- :class:`ICIndependentProposal`: a spline flow ``q(i')`` (family ``"ic-independent"``, tau -> inf);
- :class:`ICMixtureProposal`: ``w q_c(i' | i) + (1 - w) q_ind(i')`` with a user-set weight
  (family ``"ic-mixture"``).

A proposal keeps the current state's external frame (first atom, first bond direction, first
plane), so in Cartesian space

    logQRatio = log q(i | i') - log q(i' | i) + log J(i') - log J(i),

with ``log J = 2 sum log r + sum log sin(theta)`` (the frame's own measure cancels). Each model
consumes ``noise_dim = 3`` normal numbers per atom: the first ``3N - 6`` drive the flow (through the
normal CDF onto the uniform base); the mixture takes its component choice from the next one.

Every model computes ``forward_chains`` (C chains, B proposals each, in one batch of C * B
proposals); ``forward`` is its C = 1 case.

The models carry the residue-atom labels of the Topology they were built from; the integrator passes
``atom_types`` as indices into that vocabulary (``contract.atom_types_for_topology``), and the model
reorders positions through that permutation, so a System whose atoms come in another order is
proposed for correctly. Anything but a permutation of the vocabulary is refused.

Atoms the force field cannot tell apart (a methyl's hydrogens, an arginine's NH2 groups) are seen
in one canonical labelling chosen from the geometry (``openmm_timewarp.proposals.ic.equivalent``):
the model proposes for the state so relabelled and hands the proposal back in the caller's
labels; a proposal whose own canonical labelling differs gets logQRatio ``-inf``
(docs/contract.md, "Equivalent atoms", has why this is exact).
"""

import contextlib
import math
from collections.abc import Iterator

import torch
from openmm import app

from openmm_timewarp.models.contract import ChainBatchedProposal, ModelMetadata
from openmm_timewarp.proposals.ic.equivalent import EquivalentAtomLabels
from openmm_timewarp.proposals.ic.flows import SplineFlow, feature_dim, unit_features
from openmm_timewarp.proposals.ic.zmatrix import InternalCoordinateTransform, ZMatrix, build_zmatrix

NOISE_DIM = 3


def coordinate_bounds(
    zmatrix: ZMatrix,
    positions: torch.Tensor,
    margin: float = 1.0,
    min_bond_width: float = 0.04,
    min_angle_width: float = 0.6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Support ``(lower, upper)`` of every internal coordinate, from sample configurations.

    ``positions[F, N, 3]`` (nm, Z-matrix atom order). Bonds and angles get the sampled range
    widened by ``margin`` times its spread on each side, and at least the given widths (nm, rad);
    angles stay inside (0, pi), bonds positive. Torsions get the circle [-pi, pi]. A proposal
    never leaves this support, and a state outside it is never proposed, so it must hold every
    state a chain will start from.
    """
    transform = InternalCoordinateTransform(zmatrix)
    with torch.no_grad():
        q, _, _ = transform.to_internal(positions.to(torch.float64))
    low = q.min(0).values
    high = q.max(0).values
    centre = 0.5 * (low + high)
    spread = high - low
    num_bonds = transform.num_bonds
    num_interval = num_bonds + transform.num_angles
    min_width = torch.full_like(centre, min_angle_width)
    min_width[:num_bonds] = min_bond_width
    half = torch.maximum((0.5 + margin) * spread, 0.5 * min_width)
    lower = centre - half
    upper = centre + half
    lower[:num_bonds] = lower[:num_bonds].clamp_min(1e-3)
    lower[num_bonds:num_interval] = lower[num_bonds:num_interval].clamp_min(1e-3)
    upper[num_bonds:num_interval] = upper[num_bonds:num_interval].clamp_max(math.pi - 1e-3)
    lower[num_interval:] = -math.pi
    upper[num_interval:] = math.pi
    return lower.float(), upper.float()


class ZMatrixProposal(ChainBatchedProposal):
    """Shared parts of proposals on one Z-matrix: the transform, the atom permutation and the
    canonical labelling of equivalent atoms.

    ``reference [F, N, 3]`` (nm, Z-matrix atom order; the training frames) sets the labelling the
    model sees (docs/contract.md, "Equivalent atoms"); without it, labels are taken as given.
    """

    noise_dim: int
    num_internal: int
    reject_relabelled: bool

    def __init__(self, zmatrix: ZMatrix, reference: torch.Tensor | None = None) -> None:
        super().__init__()
        self.labels = list(zmatrix.labels)
        self.transform = InternalCoordinateTransform(zmatrix)
        self.noise_dim = NOISE_DIM
        self.num_internal = zmatrix.num_internal
        self.register_buffer("identity_order", torch.arange(zmatrix.num_atoms))
        groups = zmatrix.equivalent_groups if reference is not None else ()
        self.equivalent = EquivalentAtomLabels(groups, zmatrix.num_atoms)
        if reference is not None:
            self.equivalent.set_reference(reference)
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


@contextlib.contextmanager
def keeping_relabelled_proposals(model: torch.nn.Module) -> Iterator[None]:
    """Within: the IC proposals of ``model`` return their flow's ratio also for proposals whose
    canonical labelling differs from the current state's, instead of ``-inf``. For the energy
    fine-tune's acceptance objective, which then keeps a gradient from every proposal (as it
    had before equivalent atoms were labelled); never for sampling, which must reject them."""
    proposals = [module for module in model.modules() if isinstance(module, ZMatrixProposal)]
    for proposal in proposals:
        proposal.reject_relabelled = False
    try:
        yield
    finally:
        for proposal in proposals:
            proposal.reject_relabelled = True


class ICProposalBase(ZMatrixProposal):
    """Proposals on internal coordinates scaled to [0, 1] within per-coordinate bounds."""

    log_volume: float

    def __init__(
        self,
        zmatrix: ZMatrix,
        lower: torch.Tensor,
        upper: torch.Tensor,
        reference: torch.Tensor | None = None,
    ) -> None:
        super().__init__(zmatrix, reference)
        if lower.shape != (self.num_internal,) or upper.shape != (self.num_internal,):
            raise ValueError(f"bounds must have shape ({self.num_internal},), one per coordinate")
        if not bool((upper > lower).all()):
            raise ValueError("every upper bound must exceed its lower bound")
        circular = torch.zeros(self.num_internal, dtype=torch.bool)
        circular[self.transform.num_bonds + self.transform.num_angles :] = True
        self.register_buffer("circular", circular)
        self.register_buffer("interval_index", torch.nonzero(~circular).flatten())
        self.register_buffer("circular_index", torch.nonzero(circular).flatten())
        self.register_buffer("lower", lower.float().clone())
        self.register_buffer("width", (upper - lower).float().clone())
        self.log_volume = float(torch.log(upper.double() - lower.double()).sum())

    def compute_dtype(self) -> torch.dtype:
        return self.lower.dtype

    def to_unit(self, q: torch.Tensor) -> torch.Tensor:
        u = (q - self.lower) / self.width
        return torch.where(self.circular, torch.remainder(u, 1.0), u)

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        return self.lower + u * self.width

    def features(self, q: torch.Tensor) -> torch.Tensor:
        """Conditioning features of internal coordinates (``2u - 1``; cos, sin of torsions)."""
        return unit_features(self.to_unit(q), self.interval_index, self.circular_index)

    def base_uniforms(self, noise: torch.Tensor) -> torch.Tensor:
        """All noise numbers of each proposal, flattened and mapped through the normal CDF.

        ``noise [C, B, N, noise_dim]`` gives ``[C * B, N * noise_dim]``, chain by chain.
        """
        z = noise.reshape(noise.shape[0] * noise.shape[1], -1).to(self.lower.dtype)
        return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals ``[C, B, N, 3]`` and logQRatio ``[C, B]`` for chains ``[C, N, 3]``; the
        C * B proposals are computed as one batch, chain by chain."""
        num_proposals = noise.shape[1]
        q, origin, rotation, labelling = self.labelled_internal(positions, atom_types)
        q_new, log_q_forward, log_q_reverse = self.propose(
            q, self.base_uniforms(noise), num_proposals
        )
        log_ratio = (
            log_q_reverse
            - log_q_forward
            + self.transform.log_det_jacobian(q_new)
            - self.transform.log_det_jacobian(q).repeat_interleave(num_proposals)
        )
        return self.chain_outputs(
            q_new, log_ratio, origin, rotation, labelling, atom_types, noise.shape, positions.dtype
        )

    def propose(
        self, q: torch.Tensor, uniforms: torch.Tensor, num_proposals: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``num_proposals`` new internal coordinates for each chain's ``q [C, M]`` from base
        uniforms ``[C * B, ...]``, with ``log q(i' | i)`` and ``log q(i | i')`` per unit volume of
        internal coordinates, all ``[C * B]``."""
        raise NotImplementedError


class ICIndependentProposal(ICProposalBase):
    """Independence proposal ``q(i')``: a spline flow on internal coordinates (tau -> infinity)."""

    def __init__(
        self,
        zmatrix: ZMatrix,
        lower: torch.Tensor,
        upper: torch.Tensor,
        num_couplings: int = 4,
        hidden: int = 128,
        num_bins: int = 8,
        seed: int = 0,
        reference: torch.Tensor | None = None,
    ) -> None:
        super().__init__(zmatrix, lower, upper, reference)
        self.independent: bool = True
        self.flow = SplineFlow(self.circular, 0, num_couplings, hidden, num_bins, seed)

    def log_density(self, q: torch.Tensor) -> torch.Tensor:
        """``log q(i)`` per unit volume of internal coordinates (``-inf`` outside the bounds)."""
        empty = q.new_zeros(q.shape[0], 0)
        return self.flow.log_prob(self.to_unit(q), empty) - self.log_volume

    def sample(self, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Internal coordinates from base uniforms ``[B, 3N - 6]`` and their ``log q``."""
        u, log_q = self.flow.sample(uniforms, uniforms.new_zeros(uniforms.shape[0], 0))
        return self.from_unit(u), log_q - self.log_volume

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        """``-log q(i(x_next))`` per pair; ``x_cond`` is ignored (an independence proposal)."""
        q, _, _ = self.internal(x_next, atom_types)
        return -self.log_density(q)

    def propose(
        self, q: torch.Tensor, uniforms: torch.Tensor, num_proposals: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q_new, log_q_new = self.sample(uniforms[:, : self.num_internal])
        # The current state's density once per chain, not once per proposal.
        return q_new, log_q_new, self.log_density(q).repeat_interleave(num_proposals)


class ICConditionalProposal(ICProposalBase):
    """Conditional proposal ``q(i' | i)``: a spline flow conditioned on the current coordinates."""

    def __init__(
        self,
        zmatrix: ZMatrix,
        lower: torch.Tensor,
        upper: torch.Tensor,
        num_couplings: int = 4,
        hidden: int = 128,
        num_bins: int = 8,
        seed: int = 0,
        reference: torch.Tensor | None = None,
    ) -> None:
        super().__init__(zmatrix, lower, upper, reference)
        context_dim = feature_dim(self.circular)
        self.flow = SplineFlow(self.circular, context_dim, num_couplings, hidden, num_bins, seed)

    def log_density(self, q: torch.Tensor, q_given: torch.Tensor) -> torch.Tensor:
        """``log q(i | i_given)`` per unit volume (batched; ``q_given`` may have batch 1)."""
        context = self.features(q_given).expand(q.shape[0], -1)
        return self.flow.log_prob(self.to_unit(q), context) - self.log_volume

    def sample(
        self, uniforms: torch.Tensor, q_given: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Internal coordinates drawn given ``q_given`` from base uniforms, and their ``log q``."""
        context = self.features(q_given).expand(uniforms.shape[0], -1)
        u, log_q = self.flow.sample(uniforms, context)
        return self.from_unit(u), log_q - self.log_volume

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        """``-log q(i(x_next) | i(x_cond))`` per pair."""
        q_cond, _, _ = self.internal(x_cond, atom_types)
        q_next, _, _ = self.internal(x_next, atom_types)
        return -self.log_density(q_next, q_cond)

    def propose(
        self, q: torch.Tensor, uniforms: torch.Tensor, num_proposals: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q_current = q.repeat_interleave(num_proposals, dim=0)
        q_new, log_q_forward = self.sample(uniforms[:, : self.num_internal], q_current)
        return q_new, log_q_forward, self.log_density(q_current, q_new)


class ICMixtureProposal(ChainBatchedProposal):
    """``w q_c(i' | i) + (1 - w) q_ind(i')``; logQRatio uses the mixture density both ways."""

    noise_dim: int
    num_internal: int
    log_weight: float
    log_complement: float

    def __init__(
        self,
        conditional: ICConditionalProposal,
        independent: ICIndependentProposal,
        weight: float,
    ) -> None:
        super().__init__()
        if conditional.labels != independent.labels:
            raise ValueError("the two components were built for different molecules")
        if not torch.equal(conditional.equivalent.reference, independent.equivalent.reference):
            raise ValueError("the two components label equivalent atoms differently")
        if not 0.0 < weight < 1.0:
            raise ValueError(
                f"the mixture weight must lie strictly between 0 and 1, got {weight}; "
                "use the component on its own for 0 or 1"
            )
        self.conditional = conditional
        self.independent = independent
        self.labels = conditional.labels
        self.weight = weight
        self.noise_dim = NOISE_DIM
        self.num_internal = conditional.num_internal
        self.log_weight = math.log(weight)
        self.log_complement = math.log1p(-weight)

    def log_density(self, q: torch.Tensor, q_given: torch.Tensor) -> torch.Tensor:
        """``log [w q_c(i | i_given) + (1 - w) q_ind(i)]`` (batched)."""
        return torch.logaddexp(
            self.log_weight + self.conditional.log_density(q, q_given),
            self.log_complement + self.independent.log_density(q),
        )

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        """``-log`` of the mixture density of ``x_next`` given ``x_cond`` per pair."""
        q_cond, _, _ = self.conditional.internal(x_cond, atom_types)
        q_next, _, _ = self.conditional.internal(x_next, atom_types)
        return -self.log_density(q_next, q_cond)

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals ``[C, B, N, 3]`` and logQRatio ``[C, B]`` for chains ``[C, N, 3]``."""
        conditional = self.conditional
        num_proposals = noise.shape[1]
        q_chains, origin, rotation, labelling = conditional.labelled_internal(positions, atom_types)
        q = q_chains.repeat_interleave(num_proposals, dim=0)
        uniforms = conditional.base_uniforms(noise)
        base = uniforms[:, : self.num_internal]
        # The component choice, uniform through the normal CDF, from the first spare noise number.
        from_conditional = uniforms[:, self.num_internal] < self.weight
        chosen_c = torch.nonzero(from_conditional).flatten()
        chosen_i = torch.nonzero(~from_conditional).flatten()
        q_c, log_c_of_c = conditional.sample(base[chosen_c], q[chosen_c])
        q_i, log_i_of_i = self.independent.sample(base[chosen_i])
        q_new = torch.zeros_like(base).index_copy(0, chosen_c, q_c).index_copy(0, chosen_i, q_i)
        # Each proposal's density under the component that did not draw it.
        log_c_of_i = conditional.log_density(q_i, q[chosen_i])
        log_i_of_c = self.independent.log_density(q_c)
        log_c_forward = (
            torch.zeros_like(base[:, 0])
            .index_copy(0, chosen_c, log_c_of_c)
            .index_copy(0, chosen_i, log_c_of_i)
        )
        log_i_forward = (
            torch.zeros_like(base[:, 0])
            .index_copy(0, chosen_c, log_i_of_c)
            .index_copy(0, chosen_i, log_i_of_i)
        )
        log_forward = torch.logaddexp(
            self.log_weight + log_c_forward, self.log_complement + log_i_forward
        )
        # log_density(q, q_new) written out, with the independent density of each chain's
        # current state computed once per chain rather than once per proposal.
        log_reverse = torch.logaddexp(
            self.log_weight + conditional.log_density(q, q_new),
            self.log_complement
            + self.independent.log_density(q_chains).repeat_interleave(num_proposals),
        )
        log_ratio = (
            log_reverse
            - log_forward
            + conditional.transform.log_det_jacobian(q_new)
            - conditional.transform.log_det_jacobian(q)
        )
        return conditional.chain_outputs(
            q_new, log_ratio, origin, rotation, labelling, atom_types, noise.shape, positions.dtype
        )


def proposal_for_frames(
    family: str,
    topology: app.Topology,
    frames: torch.Tensor,
    margin: float = 1.0,
    num_couplings: int = 4,
    hidden: int = 128,
    num_bins: int = 8,
    seed: int = 0,
) -> "ICConditionalProposal | ICIndependentProposal":
    """A fresh ``"ic-conditional"`` or ``"ic-independent"`` model for ``topology``, its support
    set from ``frames[F, N, 3]`` (nm, Topology atom order; use the training frames)."""
    classes = {"ic-conditional": ICConditionalProposal, "ic-independent": ICIndependentProposal}
    if family not in classes:
        raise ValueError(f"family must be one of {sorted(classes)}, got {family!r}")
    zmatrix = build_zmatrix(topology)
    lower, upper = coordinate_bounds(zmatrix, frames, margin)
    return classes[family](
        zmatrix, lower, upper, num_couplings, hidden, num_bins, seed, reference=frames
    )


_FAMILIES = {
    ICConditionalProposal: "ic-conditional",
    ICIndependentProposal: "ic-independent",
    ICMixtureProposal: "ic-mixture",
}


def proposal_metadata(
    model: ICConditionalProposal | ICIndependentProposal | ICMixtureProposal,
    name: str,
    tau_ps: float,
    temperature_K: float,
    forcefield: str,
    training: dict | None = None,
) -> ModelMetadata:
    """Metadata for exporting an IC proposal with ``contract.export``.

    The vocabulary is the model's residue-atom labels. An independence proposal has no physical
    tau: ``tau_ps`` is then the nominal time per step, and the metadata say so.
    """
    family = _FAMILIES[type(model)]
    training = dict(training or {})
    if family == "ic-independent":
        training.setdefault("tau_note", "independence proposal: tau_ps is nominal")
    return ModelMetadata(
        name=name,
        family=family,
        tau_ps=tau_ps,
        temperature_K=temperature_K,
        forcefield=forcefield,
        atom_type_scheme="residue-atom",
        atom_types=list(model.labels),
        num_atoms=len(model.labels),
        training=training,
    )


def rebuild_with_reference(
    proposal: torch.nn.Module,
    metadata: ModelMetadata,
    topology: app.Topology,
    reference: torch.Tensor | None,
) -> "ICConditionalProposal | ICIndependentProposal":
    """An ``ic-independent`` or ``ic-conditional`` model with the weights of ``proposal`` (a loaded
    file's ``proposal`` submodule, e.g. one written before equivalent atoms were labelled from the
    geometry) and the reference labelling of ``reference [F, N, 3]`` (nm, Topology atom order:
    frames of its training data); ``None`` takes labels as given, as such older files did."""
    classes = {"ic-conditional": ICConditionalProposal, "ic-independent": ICIndependentProposal}
    if metadata.family not in classes:
        raise ValueError(
            f"can rebuild ic-independent and ic-conditional models, not {metadata.family!r}; "
            "rebuild a mixture's components and mix them again"
        )
    state = {
        key: value
        for key, value in proposal.state_dict().items()
        if not key.startswith("equivalent.")
    }
    lower = state["lower"]
    model = classes[metadata.family](
        build_zmatrix(topology),
        lower,
        lower + state["width"],
        **metadata.training["architecture"],
        reference=reference,
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith("equivalent.") for key in missing):
        raise ValueError(f"the weights do not fit: missing {missing}, unexpected {unexpected}")
    return model
