"""Coupling flows of rational-quadratic splines on the unit box, optionally with a context.

The flow maps a base point ``z`` uniform on ``[0, 1]^D`` to ``u`` (coordinates scaled to [0, 1]; the
circular ones, torsions, periodic). Each coupling transforms one fixed subset of coordinates with
splines whose parameters an MLP computes from the other coordinates and the context (the current
state's internal coordinates, for a conditional flow; an empty tensor otherwise). The subsets come
from a seeded random split per pair of couplings, so every coordinate is transformed and every pair
of coordinates can interact. The last layer of each MLP starts at zero: a fresh flow is the identity
(a uniform density). Everything here is TorchScript-able.
"""

import math

import torch
from torch import nn

from openmm_timewarp.proposals.ic.splines import num_spline_parameters, rational_quadratic


def unit_features(u: torch.Tensor, interval: torch.Tensor, circular: torch.Tensor) -> torch.Tensor:
    """Network inputs for coordinates on [0, 1]: ``2u - 1`` on intervals, cos and sin on circles."""
    angle = (2.0 * math.pi) * u[:, circular]
    return torch.cat([2.0 * u[:, interval] - 1.0, torch.cos(angle), torch.sin(angle)], dim=-1)


def feature_dim(circular: torch.Tensor) -> int:
    return int(circular.numel() + circular.sum())


class SplineCoupling(nn.Module):
    """Splines on ``u[:, transformed]`` conditioned on the other coordinates and a context."""

    num_bins: int

    def __init__(
        self,
        transformed: torch.Tensor,
        circular: torch.Tensor,
        context_dim: int,
        hidden: int,
        num_bins: int,
    ) -> None:
        super().__init__()
        dim = circular.numel()
        is_transformed = torch.zeros(dim, dtype=torch.bool)
        is_transformed[transformed] = True
        conditioned = torch.nonzero(~is_transformed).flatten()
        transformed = torch.nonzero(is_transformed).flatten()
        self.num_bins = num_bins
        self.register_buffer("transformed", transformed)
        self.register_buffer("conditioned_interval", conditioned[~circular[conditioned]])
        self.register_buffer("conditioned_circular", conditioned[circular[conditioned]])
        self.register_buffer("circular", circular[transformed])
        inputs = feature_dim(circular[conditioned]) + context_dim
        outputs = transformed.numel() * num_spline_parameters(num_bins)
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, outputs),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self, u: torch.Tensor, context: torch.Tensor, inverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = unit_features(u, self.conditioned_interval, self.conditioned_circular)
        raw = self.net(torch.cat([features, context], dim=-1))
        raw = raw.reshape(u.shape[0], self.transformed.numel(), 3 * self.num_bins + 1)
        values, log_derivative = rational_quadratic(
            u[:, self.transformed], raw, self.circular, inverse
        )
        return u.index_copy(1, self.transformed, values), log_derivative.sum(-1)


class SplineFlow(nn.Module):
    """A stack of spline couplings on ``[0, 1]^D`` with a uniform base density."""

    def __init__(
        self,
        circular: torch.Tensor,
        context_dim: int = 0,
        num_couplings: int = 4,
        hidden: int = 128,
        num_bins: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_couplings < 2 or num_couplings % 2:
            raise ValueError(f"num_couplings must be an even number >= 2, got {num_couplings}")
        dim = circular.numel()
        generator = torch.Generator().manual_seed(seed)
        couplings = []
        for _ in range(num_couplings // 2):
            permutation = torch.randperm(dim, generator=generator)
            for half in (permutation[: dim // 2], permutation[dim // 2 :]):
                couplings.append(SplineCoupling(half, circular, context_dim, hidden, num_bins))
        self.context_dim = context_dim
        self.couplings = nn.ModuleList(couplings)
        # TorchScript iterates a ModuleList only forwards; the inverse walks this alias of it.
        self.reversed_couplings = nn.ModuleList(couplings[::-1])

    def sample(self, z: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map base points ``z`` to ``u``; returns ``(u, log q(u))``."""
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for coupling in self.couplings:
            z, step = coupling(z, context, False)
            log_det = log_det + step
        return z, -log_det

    def log_prob(self, u: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``log q(u | context)``; ``-inf`` outside the support."""
        log_det = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
        for coupling in self.reversed_couplings:
            u, step = coupling(u, context, True)
            log_det = log_det + step
        return log_det
