"""Timewarp's augmented conditional flow and its proposal-model module.

The flow (Klein et al. 2023) is a conditional density ``p(x', v' | x)`` over the next
configuration ``x'`` and an auxiliary variable ``v'`` of the same shape, given the current
configuration ``x``. A Gaussian base with learnable per-atom-type scales is pushed through coupling
layers that alternately update the position half (given the auxiliary half and ``x``) and the
auxiliary half (given the position half and ``x``); every conditioner is an atom transformer with
kernel self-attention over the distances of ``x`` (:mod:`.transformer`). The position half is the
displacement ``x' - x``.

Translation. Every configuration splits into its centre of geometry and its centred part. The flow
is a density on the centred space (``sum_i y_i = 0`` per axis, dimension 3(N-1)) for both halves;
:mod:`.coupling` gives the exact Jacobians and inverses there. A proposal keeps the centre of
geometry of ``x``: ``x' = x + d`` with a centred displacement ``d``. The proposal density is thus
the flow's density on the centred space times a point mass on the centre, the same in both
directions, so the point masses cancel in the Metropolis-Hastings ratio: the chain is exact
Metropolis-Hastings on the slice of configurations with the initial centre. For a
translation-invariant potential (any non-periodic system without external fields) that slice
carries the full Boltzmann distribution of the internal coordinates. The auxiliary variables live
on the centred space too: ``v ~ N(0, I)`` there, i.e. ``v = centre(e)`` for a standard normal
``e`` of shape ``[N, 3]``.

Proposal and exact acceptance (Timewarp's Algorithm 1). The chain runs on the augmented state
``(x, v)`` with target ``pi(x) N(v)``, whose marginal in ``x`` is ``pi``. One iteration:

1. Gibbs step: draw ``v ~ N(0, I)`` afresh (this leaves the target invariant).
2. Draw ``(x', v') ~ p(. | x)`` with the flow: base sample, couplings conditioned on ``x``.
3. Accept with probability ``min(1, pi(x') N(v') p(x, v | x') / (pi(x) N(v) p(x', v' | x)))``.

Step 3 is Metropolis-Hastings for the proposal kernel ``(x, v) -> (x', v')`` with density
``p(x', v' | x)``, whose reverse move has density ``p(x, v | x')``. The module returns

    logQRatio = log p(x, v | x') + log N(v') - log p(x', v' | x) - log N(v)

and the integrator adds ``-(U(x') - U(x)) / kT``. ``log p(x', v' | x)`` comes with the forward
(latent -> data) pass; ``log p(x, v | x')`` is one batched inverse pass, conditioned on each
``x'``, at the displacement ``x - x'`` and the Gibbs draw ``v``.

The module meets the proposal-model contract (docs/contract.md) with ``noise_dim = 9`` numbers
per atom: 3 for the Gibbs draw of ``v``, 3 + 3 for the base samples of the two halves. Its
``forward_chains`` proposes for several chains in one batch; ``forward`` is the one-chain case.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import FlowConfig
from .coupling import (
    AffineCoupling,
    centre,
    centred_affine_forward,
    centred_affine_inverse,
    centred_standard_normal_log_prob,
)
from .transformer import kernel_attention_weights


class CouplingLayer(nn.Module):
    """Timewarp's coupling layer: update the position half, then the auxiliary half."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        sizes = dict(
            num_atom_types=config.num_atom_types,
            atom_embedding_dim=config.atom_embedding_dim,
            width=config.width,
            feedforward=config.feedforward,
            num_layers=config.num_layers,
            num_heads=len(config.length_scales_nm),
            head_dim=config.head_dim,
            max_log_scale=config.max_log_scale,
        )
        self.position_coupling = AffineCoupling(**sizes)
        self.auxiliary_coupling = AffineCoupling(**sizes)

    def forward(
        self,
        displacement: torch.Tensor,
        auxiliary: torch.Tensor,
        conditioning: torch.Tensor,
        atom_types: torch.Tensor,
        attention_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent -> data direction; returns both halves and ``log|det|`` ``[B]``."""
        displacement, position_log_det = self.position_coupling(
            displacement, auxiliary, conditioning, atom_types, attention_weights
        )
        auxiliary, auxiliary_log_det = self.auxiliary_coupling(
            auxiliary, displacement, conditioning, atom_types, attention_weights
        )
        return displacement, auxiliary, position_log_det + auxiliary_log_det

    @torch.jit.export
    def inverse(
        self,
        displacement: torch.Tensor,
        auxiliary: torch.Tensor,
        conditioning: torch.Tensor,
        atom_types: torch.Tensor,
        attention_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Data -> latent direction; returns both halves and ``log|det|`` ``[B]`` of this map."""
        auxiliary, auxiliary_log_det = self.auxiliary_coupling.inverse(
            auxiliary, displacement, conditioning, atom_types, attention_weights
        )
        displacement, position_log_det = self.position_coupling.inverse(
            displacement, auxiliary, conditioning, atom_types, attention_weights
        )
        return displacement, auxiliary, position_log_det + auxiliary_log_det


class TimewarpProposal(nn.Module):
    """Timewarp's augmented conditional RealNVP, as a proposal model (see the module docstring).

    Conditioning coordinates ``[B or 1, N, 3]`` and atom types ``[N]`` or ``[B or 1, N]`` broadcast
    over the batch. Coordinates are in nm; atom types index the model's vocabulary.
    """

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        self.noise_dim = 9
        self.num_atom_types = config.num_atom_types
        # Base scales per atom type, for the position half (column 0) and auxiliary half (column 1).
        self.base_log_scale = nn.Parameter(torch.zeros(config.num_atom_types, 2))
        self.register_buffer(
            "inverse_squared_length_scales",
            torch.tensor([length**-2 for length in config.length_scales_nm]),
        )
        self.layers = nn.ModuleList([CouplingLayer(config) for _ in range(config.num_couplings)])
        # The same modules in reverse order: TorchScript cannot iterate a ModuleList backwards.
        self.layers_in_inverse_order = nn.ModuleList(list(self.layers)[::-1])

    def _check_atom_types(self, atom_types: torch.Tensor, num_atoms: int) -> torch.Tensor:
        if atom_types.dtype != torch.int64:
            raise ValueError("atom_types must be an int64 tensor of type codes")
        if atom_types.shape[-1] != num_atoms:
            raise ValueError(
                f"atom_types has {atom_types.shape[-1]} entries for {num_atoms} atoms; "
                "give one type code per atom"
            )
        if atom_types.numel() > 0 and (
            int(atom_types.min()) < 0 or int(atom_types.max()) >= self.num_atom_types
        ):
            raise ValueError(
                f"atom type codes must lie in 0..{self.num_atom_types - 1} (the model's vocabulary)"
            )
        return atom_types.reshape(-1, num_atoms)

    def _base_log_scale(self, atom_types: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scales = self.base_log_scale[atom_types]
        return scales[..., 0:1], scales[..., 1:2]

    def latent_to_data(
        self,
        base_displacement: torch.Tensor,
        base_auxiliary: torch.Tensor,
        conditioning: torch.Tensor,
        atom_types: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centred standard-normal latents ``[B, N, 3]`` -> centred displacement, auxiliary and
        their ``log p(displacement, auxiliary | conditioning)`` ``[B]``.

        ``conditioning`` is the centred current configuration ``[B or 1, N, 3]``, ``atom_types``
        ``[B or 1, N]``.
        """
        log_prob = centred_standard_normal_log_prob(
            base_displacement
        ) + centred_standard_normal_log_prob(base_auxiliary)
        weights = kernel_attention_weights(conditioning, self.inverse_squared_length_scales)
        displacement_scale, auxiliary_scale = self._base_log_scale(atom_types)
        displacement, log_det = centred_affine_forward(
            base_displacement, torch.zeros_like(base_displacement), displacement_scale
        )
        log_prob = log_prob - log_det
        auxiliary, log_det = centred_affine_forward(
            base_auxiliary, torch.zeros_like(base_auxiliary), auxiliary_scale
        )
        log_prob = log_prob - log_det
        for layer in self.layers:
            displacement, auxiliary, log_det = layer(
                displacement, auxiliary, conditioning, atom_types, weights
            )
            log_prob = log_prob - log_det
        return displacement, auxiliary, log_prob

    def data_to_latent(
        self,
        displacement: torch.Tensor,
        auxiliary: torch.Tensor,
        conditioning: torch.Tensor,
        atom_types: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inverse of :meth:`latent_to_data`: centred displacement and auxiliary ``[B, N, 3]``
        -> centred standard-normal latents and ``log p(displacement, auxiliary | conditioning)``."""
        weights = kernel_attention_weights(conditioning, self.inverse_squared_length_scales)
        log_det_total = torch.zeros(
            displacement.shape[0], dtype=displacement.dtype, device=displacement.device
        )
        for layer in self.layers_in_inverse_order:
            displacement, auxiliary, log_det = layer.inverse(
                displacement, auxiliary, conditioning, atom_types, weights
            )
            log_det_total = log_det_total + log_det
        displacement_scale, auxiliary_scale = self._base_log_scale(atom_types)
        displacement, log_det = centred_affine_inverse(
            displacement, torch.zeros_like(displacement), displacement_scale
        )
        log_det_total = log_det_total + log_det
        auxiliary, log_det = centred_affine_inverse(
            auxiliary, torch.zeros_like(auxiliary), auxiliary_scale
        )
        log_det_total = log_det_total + log_det
        log_prob = (
            centred_standard_normal_log_prob(displacement)
            + centred_standard_normal_log_prob(auxiliary)
            + log_det_total
        )
        return displacement, auxiliary, log_prob

    @torch.jit.export
    def log_prob(
        self,
        x_cond: torch.Tensor,
        x_next: torch.Tensor,
        auxiliary: torch.Tensor,
        atom_types: torch.Tensor,
    ) -> torch.Tensor:
        """``log p(x_next, v | x_cond)`` on the centred space, ``[B]``.

        ``x_cond`` is ``[B or 1, N, 3]``, ``x_next`` and the centred ``auxiliary`` ``[B, N, 3]``.
        The centres of ``x_cond`` and ``x_next`` are ignored (the density is on centred space).
        """
        atom_types = self._check_atom_types(atom_types, x_next.shape[-2])
        conditioning = centre(x_cond)
        displacement = centre(x_next) - conditioning
        return self.data_to_latent(displacement, auxiliary, conditioning, atom_types)[2]

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        """Maximum-likelihood loss ``-log p(x_next, v | x_cond)``, ``[B]``, with a fresh
        ``v ~ N(0, I)`` per pair from torch's global generator (seed it for reproducibility)."""
        auxiliary = centre(torch.randn_like(x_next))
        return -self.log_prob(x_cond, x_next, auxiliary, atom_types)

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals ``[B, N, 3]`` from ``positions [N, 3]`` and their ``logQRatio`` ``[B]``.

        ``noise [B, N, 9]`` holds standard normals: the Gibbs draw of ``v`` (0:3), then the base
        samples of the displacement (3:6) and the auxiliary half (6:9).
        """
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError("positions must have shape [N, 3] (nm)")
        num_atoms = positions.shape[0]
        if noise.dim() != 3 or noise.shape[1] != num_atoms or noise.shape[2] != self.noise_dim:
            raise ValueError(f"noise must have shape [B, {num_atoms}, {self.noise_dim}]")
        proposals, log_q_ratio = self.forward_chains(
            positions.unsqueeze(0), atom_types, noise.unsqueeze(0)
        )
        return proposals[0], log_q_ratio[0]

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for C chains at once: ``positions [C, N, 3]``, ``noise [C, B, N, 9]``
        -> proposals ``[C, B, N, 3]`` and ``logQRatio`` ``[C, B]``, all C * B in one batch."""
        if positions.dim() != 3 or positions.shape[2] != 3:
            raise ValueError("positions must have shape [C, N, 3] (nm)")
        num_chains = positions.shape[0]
        num_atoms = positions.shape[1]
        if num_atoms < 2:
            raise ValueError("the flow needs at least 2 atoms")
        if (
            noise.dim() != 4
            or noise.shape[0] != num_chains
            or noise.shape[2] != num_atoms
            or noise.shape[3] != self.noise_dim
        ):
            raise ValueError(
                f"noise must have shape [{num_chains}, B, {num_atoms}, {self.noise_dim}]"
            )
        atom_types = self._check_atom_types(atom_types, num_atoms)
        num_proposals = noise.shape[1]
        dtype = self.base_log_scale.dtype
        positions = positions.to(dtype)
        noise = noise.to(dtype).reshape(num_chains * num_proposals, num_atoms, self.noise_dim)
        auxiliary = centre(noise[..., 0:3])
        conditioning = centre(positions)
        if num_chains > 1:
            # One conditioning state per proposal; a single chain's state is shared (batch 1).
            conditioning = conditioning.repeat_interleave(num_proposals, dim=0)

        displacement, next_auxiliary, forward_log_prob = self.latent_to_data(
            centre(noise[..., 3:6]), centre(noise[..., 6:9]), conditioning, atom_types
        )
        # Reverse move: from x' = x + d back to x, i.e. displacement -d, with the Gibbs draw v.
        reverse_log_prob = self.data_to_latent(
            -displacement, auxiliary, conditioning + displacement, atom_types
        )[2]
        log_q_ratio = (
            reverse_log_prob
            + centred_standard_normal_log_prob(next_auxiliary)
            - forward_log_prob
            - centred_standard_normal_log_prob(auxiliary)
        )
        proposals = positions.unsqueeze(1) + displacement.view(
            num_chains, num_proposals, num_atoms, 3
        )
        return proposals, log_q_ratio.view(num_chains, num_proposals)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (shared modules counted once)."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
