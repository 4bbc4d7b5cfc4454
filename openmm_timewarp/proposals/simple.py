"""Simple proposal models that meet the proposal-model contract (docs/contract.md).

They know nothing about molecules and exist to test and benchmark :class:`TimewarpIntegrator`:
a symmetric Gaussian random walk (``logQRatio = 0``), and two asymmetric proposals whose
``logQRatio`` is not zero, an independent Gaussian and a drifted Gaussian walk.  All randomness
comes in through ``noise`` (one standard-normal number per coordinate, ``noise_dim = 3``).
Each computes ``forward_chains`` (C chains at once, docs/contract.md); ``forward`` is its C = 1
case.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from openmm_timewarp.models.files import export
from openmm_timewarp.models.metadata import ModelMetadata
from openmm_timewarp.proposals.base import ChainBatchedProposal

__all__ = [
    "DriftedGaussianWalk",
    "GaussianRandomWalk",
    "IndependentGaussian",
    "export_simple_proposal",
]


def _gaussian_log_kernel(displacement: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(displacement; 0, sigma^2 I) summed over atoms and coordinates, up to a constant."""
    return -0.5 * (displacement / sigma).square().sum(dim=(-2, -1))


class GaussianRandomWalk(ChainBatchedProposal):
    """x' = x + sigma * noise: symmetric, so logQRatio = 0."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be positive (nm), got {sigma}")
        self.noise_dim: int = 3
        self.sigma: float = float(sigma)

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals = positions.unsqueeze(1) + self.sigma * noise
        return proposals, torch.zeros(noise.shape[:2], dtype=positions.dtype)


class IndependentGaussian(ChainBatchedProposal):
    """x' = centre + sigma * noise, whatever x is (an independence proposal).

    logQRatio = log q(x) - log q(x'), with q = N(centre, sigma^2 I).
    """

    def __init__(self, sigma: float, centre: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be positive (nm), got {sigma}")
        self.noise_dim: int = 3
        self.independent: bool = True
        self.sigma: float = float(sigma)
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32).reshape(-1, 3))

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals = self.centre + self.sigma * noise
        log_q_current = _gaussian_log_kernel(positions - self.centre, self.sigma)
        log_q_proposed = _gaussian_log_kernel(proposals - self.centre, self.sigma)
        return proposals, log_q_current.unsqueeze(1) - log_q_proposed


class DriftedGaussianWalk(ChainBatchedProposal):
    """x' = x + drift + sigma * noise: an asymmetric walk.

    logQRatio = log N(x - x' - drift) - log N(x' - x - drift), both with width sigma.
    """

    def __init__(self, sigma: float, drift: Sequence[float]) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be positive (nm), got {sigma}")
        self.noise_dim: int = 3
        self.sigma: float = float(sigma)
        self.register_buffer("drift", torch.tensor(drift, dtype=torch.float32).reshape(-1, 3))

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        current = positions.unsqueeze(1)
        proposals = current + self.drift + self.sigma * noise
        step = proposals - current
        log_q_reverse = _gaussian_log_kernel(-step - self.drift, self.sigma)
        log_q_forward = _gaussian_log_kernel(step - self.drift, self.sigma)
        return proposals, log_q_reverse - log_q_forward


def export_simple_proposal(
    model: torch.nn.Module,
    path: str | os.PathLike,
    num_atoms: int | None = None,
    tau_ps: float = 1.0,
    temperature_K: float = 300.0,
    atom_types: Sequence[str] = ("X",),
    name: str = "simple",
) -> Path:
    """Write a simple proposal as a proposal-model file (family ``"simple"``, element scheme)."""
    metadata = ModelMetadata(
        name=name,
        family="simple",
        tau_ps=tau_ps,
        temperature_K=temperature_K,
        forcefield="any",
        atom_type_scheme="element",
        atom_types=list(atom_types),
        num_atoms=num_atoms,
        training={"description": f"{type(model).__name__}: not trained"},
    )
    example = None if num_atoms else torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    return export(model, path, metadata, example_positions=example)
