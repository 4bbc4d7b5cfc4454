"""Deliberately wrong proposal models shared by the exactness tests."""

import torch


class SignFlipped(torch.nn.Module):
    """The wrapped proposal with logQRatio negated: a wrong MH ratio that tests must catch."""

    def __init__(self, proposal: torch.nn.Module) -> None:
        super().__init__()
        self.proposal = proposal
        self.noise_dim: int = proposal.noise_dim
        self.independent: bool = bool(getattr(proposal, "independent", False))

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals, log_q_ratio = self.proposal(positions, atom_types, noise)
        return proposals, -log_q_ratio


class DeclaredIndependent(torch.nn.Module):
    """A state-dependent proposal that claims to be an independence proposal, so the integrator
    wrongly keeps its batches after an acceptance: a wrong chain that tests must catch."""

    def __init__(self, proposal: torch.nn.Module) -> None:
        super().__init__()
        self.proposal = proposal
        self.noise_dim: int = proposal.noise_dim
        self.independent: bool = True

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proposal(positions, atom_types, noise)
