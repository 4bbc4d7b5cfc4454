"""Reduced potential energies of batched configurations from OpenMM, differentiable in torch.

:class:`ReducedPotential` owns an OpenMM ``Context`` (Reference or CPU platform) of a ``System`` at
a temperature and evaluates ``u(x) = U(x) / kT`` for configurations ``[B, N, 3]`` (nm), one
``setPositions`` and one energy-and-forces evaluation each. Through
:class:`ReducedPotentialFunction` the result is part of the autograd graph: the backward pass
returns ``-F(x) / kT`` times the incoming gradient, with the forces OpenMM computed in the forward
pass (no second evaluation).

A configuration whose positions, energy or forces are not finite (a proposal with a NaN, atoms on
top of each other) gets the energy ``nan`` and a zero gradient, so a loss that masks it with
``torch.isfinite`` is not poisoned by it; the potential counts such configurations.

Example::

    potential = ReducedPotential(system, temperature_K=310.0)
    u = potential(proposals)  # float64 [B], differentiable with respect to proposals
    finite = torch.isfinite(u)
    loss = torch.where(finite, u, 0.0).sum() / finite.sum()
"""

from __future__ import annotations

import numpy as np
import openmm
import torch
from openmm import unit

#: Platforms a potential may use: both evaluate one configuration at a time on the CPU.
PLATFORMS = ("Reference", "CPU")


def thermal_energy(temperature_K: float) -> float:
    """``kT`` in kJ/mol."""
    return float(
        (unit.MOLAR_GAS_CONSTANT_R * temperature_K * unit.kelvin).value_in_unit(
            unit.kilojoule_per_mole
        )
    )


class ReducedPotential:
    """``u(x) = U(x) / kT`` of a ``System`` through its own OpenMM ``Context``.

    Call it on a tensor ``[B, N, 3]`` (nm, any float dtype) to get the float64 energies ``[B]``,
    differentiable with respect to the positions. ``num_evaluations`` and ``num_nonfinite`` count
    the configurations evaluated and those that came out non-finite (energy ``nan``, gradient 0).
    """

    def __init__(
        self, system: openmm.System, temperature_K: float, platform: str = "Reference"
    ) -> None:
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}, got {platform!r}")
        if not temperature_K > 0:
            raise ValueError(f"temperature_K must be positive, got {temperature_K}")
        self.system = system
        self.num_atoms = system.getNumParticles()
        self.temperature_K = float(temperature_K)
        self.kT = thermal_energy(temperature_K)
        # The integrator is never stepped: the Context only evaluates energies and forces.
        self.context = openmm.Context(
            system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform)
        )
        self.num_evaluations = 0
        self.num_nonfinite = 0

    def evaluate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reduced energies ``[B]`` and their gradients ``-F / kT`` ``[B, N, 3]`` (float64).

        Non-finite configurations get the energy ``nan`` and a zero gradient.
        """
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 3 or positions.shape[1:] != (self.num_atoms, 3):
            raise ValueError(
                f"positions must have shape [B, {self.num_atoms}, 3] (the System has "
                f"{self.num_atoms} particles), got {positions.shape}"
            )
        energies = np.full(len(positions), np.nan)
        gradients = np.zeros_like(positions)
        for index, x in enumerate(positions):
            self.num_evaluations += 1
            if not np.isfinite(x).all():
                self.num_nonfinite += 1
                continue
            self.context.setPositions(x)
            state = self.context.getState(getEnergy=True, getForces=True)
            energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            forces = state.getForces(asNumpy=True).value_in_unit(
                unit.kilojoule_per_mole / unit.nanometer
            )
            if not (np.isfinite(energy) and np.isfinite(forces).all()):
                self.num_nonfinite += 1
                continue
            energies[index] = energy / self.kT
            gradients[index] = -forces / self.kT
        return energies, gradients

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        return ReducedPotentialFunction.apply(positions, self)


class ReducedPotentialFunction(torch.autograd.Function):
    """``u(x)`` of a :class:`ReducedPotential` as an autograd function of the positions."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        positions: torch.Tensor,
        potential: ReducedPotential,
    ) -> torch.Tensor:
        energies, gradients = potential.evaluate(positions.detach().cpu().numpy())
        energies = torch.from_numpy(energies).to(positions.device)
        gradients = torch.from_numpy(gradients).to(positions.device, positions.dtype)
        ctx.save_for_backward(gradients, torch.isfinite(energies))
        return energies

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_energies: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        gradients, finite = ctx.saved_tensors
        # A non-finite configuration gets a zero gradient whatever flows back to it (a masked
        # loss may send it 0 * nan), so it cannot poison the others.
        weights = torch.where(finite, grad_energies, 0.0).to(gradients.dtype)
        return weights[:, None, None] * gradients, None
