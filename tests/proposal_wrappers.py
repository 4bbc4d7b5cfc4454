"""Deliberately wrong proposal models shared by the exactness tests, and a small System."""

from pathlib import Path

import openmm
import torch

from openmm_timewarp.models.files import _ContractModule, save_module
from openmm_timewarp.models.metadata import ModelMetadata


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


def save_without_checks(proposal: torch.nn.Module, path: Path, num_atoms: int) -> Path:
    """Write ``proposal`` as ``export_simple_proposal`` does but without the contract checks,
    which refuse a wrong independence declaration: for tests that the sampling checks catch it."""
    metadata = ModelMetadata(
        name="unchecked",
        family="simple",
        tau_ps=1.0,
        temperature_K=300.0,
        forcefield="any",
        atom_type_scheme="element",
        atom_types=["X"],
        num_atoms=num_atoms,
    )
    return save_module(_ContractModule(proposal, metadata), path, metadata)


class NonFinite(torch.nn.Module):
    """Alternates NaN positions and an infinite logQRatio."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim: int = 1

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = noise.shape[0]
        proposals = positions.unsqueeze(0).repeat(batch, 1, 1)
        proposals[0::2] = float("nan")
        log_q_ratio = torch.zeros(batch)
        log_q_ratio[1::2] = float("inf")
        return proposals, log_q_ratio


def tethered_particles(count: int = 4) -> openmm.System:
    """Particles of mass 12 in a weak harmonic tether to the origin (finite, smooth energy)."""
    system = openmm.System()
    force = openmm.CustomExternalForce("10*(x^2+y^2+z^2)")
    for _ in range(count):
        force.addParticle(system.addParticle(12.0), [])
    system.addForce(force)
    return system
