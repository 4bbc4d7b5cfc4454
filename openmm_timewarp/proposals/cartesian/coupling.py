"""Affine maps and couplings on centred coordinates.

Both halves of the flow (the displacement and the auxiliary variable) live in the space of centred
configurations, ``{y in R^{N x 3} : sum_i y_i = 0}``: for each Cartesian axis, the orthogonal
complement of the all-ones vector of R^N. Densities are taken with respect to Lebesgue measure on
that 3(N-1)-dimensional space.

An elementwise affine map followed by re-centring, ``y = P(exp(s) * x + t)`` with
``P = I - 11^T / N`` applied per axis, maps the space onto itself. Restricted to it, its Jacobian
determinant is ``det(U^T D U)`` for an orthonormal basis U of the space and ``D = diag(exp(s))``;
with the unit vector ``u = 1 / sqrt(N)`` completing U to an orthogonal matrix,
``det(U^T D U) = det(D) * u^T D^{-1} u``, so per axis

    log|det| = sum_i s_i + log(mean_i exp(-s_i)).

The inverse is closed form as well: ``x = exp(-s) * (y - t + c)`` with the scalar ``c`` per axis
that makes ``x`` sum to zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .transformer import AtomTransformer


def centre(coordinates: torch.Tensor) -> torch.Tensor:
    """Subtract the centre of geometry over atoms (dimension -2) from ``[..., N, 3]``."""
    return coordinates - coordinates.mean(dim=-2, keepdim=True)


def centred_standard_normal_log_prob(centred: torch.Tensor) -> torch.Tensor:
    """Log-density of the standard normal on the centred space, for ``[B, N, 3]`` -> ``[B]``.

    ``centre(e)`` for ``e ~ N(0, I_{3N})`` is exactly this distribution.
    """
    dimension = 3 * (centred.shape[-2] - 1)
    return -0.5 * centred.square().sum((-2, -1)) - 0.5 * dimension * math.log(2 * math.pi)


def _centred_log_det(log_scale: torch.Tensor) -> torch.Tensor:
    """log|det| of ``x -> P(exp(s) * x + t)`` on the centred space; ``[B, N, 3]`` -> ``[B]``."""
    num_atoms = log_scale.shape[-2]
    log_mean_inverse = torch.logsumexp(-log_scale, dim=-2) - math.log(num_atoms)
    return log_scale.sum((-2, -1)) + log_mean_inverse.sum(-1)


def centred_affine_forward(
    x: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = P(exp(s) * x + t)`` for centred ``x [B, N, 3]``; returns ``y`` and ``log|dy/dx|``."""
    log_scale = log_scale.expand_as(x)
    y = centre(x * torch.exp(log_scale) + shift)
    return y, _centred_log_det(log_scale)


def centred_affine_inverse(
    y: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`centred_affine_forward`; returns ``x`` and ``log|dx/dy|``."""
    log_scale = log_scale.expand_as(y)
    inverse_scale = torch.exp(-log_scale)
    unshifted = (y - shift) * inverse_scale
    offset = -unshifted.sum(dim=-2, keepdim=True) / inverse_scale.sum(dim=-2, keepdim=True)
    return unshifted + inverse_scale * offset, -_centred_log_det(log_scale)


class AffineCoupling(nn.Module):
    """Updates one half of the flow's state given the other half and the conditioning state.

    The conditioner sees, per atom, the centred conditioning coordinates, the fixed half and the
    atom type, and mixes atoms with kernel attention over the conditioning distances; it returns a
    shift and a log-scale per atom and axis.
    """

    def __init__(
        self,
        num_atom_types: int,
        atom_embedding_dim: int,
        width: int,
        feedforward: int,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        max_log_scale: float,
    ) -> None:
        super().__init__()
        self.max_log_scale = max_log_scale
        self.conditioner = AtomTransformer(
            num_atom_types=num_atom_types,
            atom_embedding_dim=atom_embedding_dim,
            context_dim=3,
            input_dim=3,
            output_dim=6,
            width=width,
            feedforward=feedforward,
            num_layers=num_layers,
            num_heads=num_heads,
            head_dim=head_dim,
        )

    def _shift_and_log_scale(
        self,
        fixed_half: torch.Tensor,
        conditioning: torch.Tensor,
        atom_types: torch.Tensor,
        attention_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.conditioner(conditioning, fixed_half, atom_types, attention_weights)
        shift, raw_log_scale = output.chunk(2, dim=-1)
        log_scale = self.max_log_scale * torch.tanh(raw_log_scale / self.max_log_scale)
        return shift, log_scale

    def forward(
        self,
        updated_half: torch.Tensor,
        fixed_half: torch.Tensor,
        conditioning: torch.Tensor,
        atom_types: torch.Tensor,
        attention_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent -> data direction: the new ``updated_half`` and ``log|det|`` ``[B]``."""
        shift, log_scale = self._shift_and_log_scale(
            fixed_half, conditioning, atom_types, attention_weights
        )
        return centred_affine_forward(updated_half, shift, log_scale)

    @torch.jit.export
    def inverse(
        self,
        updated_half: torch.Tensor,
        fixed_half: torch.Tensor,
        conditioning: torch.Tensor,
        atom_types: torch.Tensor,
        attention_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> latent direction: the previous ``updated_half`` and its ``log|det|`` ``[B]``."""
        shift, log_scale = self._shift_and_log_scale(
            fixed_half, conditioning, atom_types, attention_weights
        )
        return centred_affine_inverse(updated_half, shift, log_scale)
