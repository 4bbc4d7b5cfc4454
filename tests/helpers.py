"""Shared by the tests: analytic Systems with exact expectations, and deliberately wrong proposals.

Analytic Systems: particles tethered to the origin, free particles, a harmonic array and a tilted
double well, with their exact averages and :func:`compare`, which holds a chain's averages to them
within TOLERANCE standard errors (batch means, so the chain's autocorrelation is included). The
integrator's (test_integrator_sampling.py) and the many-chain sampler's (test_chains.py) exactness
tests use the same cases, so both Metropolis-Hastings implementations meet the same expectations.

Wrong proposals, controls that the exactness tests must catch: a negated logQRatio
(:class:`SignFlipped`, :func:`sign_flipped_copy`), a state-dependent proposal declared independent
(:class:`DeclaredIndependent`), non-finite output (:class:`NonFinite`).

:data:`SHORT_REFERENCE`: the settings of the short capped-alanine MD reference that conftest.py's
``reference_dir`` fixture generates once for every evaluation test.
"""

import math
from pathlib import Path

import numpy as np
import openmm
import torch

from openmm_timewarp.data.energy import thermal_energy
from openmm_timewarp.models.contract import load_model
from openmm_timewarp.models.files import _ContractModule, save_module
from openmm_timewarp.models.metadata import ModelMetadata
from openmm_timewarp.proposals.simple import (
    DriftedGaussianWalk,
    GaussianRandomWalk,
    IndependentGaussian,
)

TEMPERATURE = 300.0
KT = thermal_energy(TEMPERATURE)
TOLERANCE = 4.0
NUM_BATCHES = 25
THIN = 10
BURN_IN = 1_000

#: 10 ps of reference MD at 50 fs per frame: generated in seconds.
SHORT_REFERENCE = dict(
    reference_ns=0.01,
    reference_frame_interval_ps=0.05,
    reference_equilibration_ps=1.0,
)

# Harmonic oscillator array: two particles, standard deviations 0.05 and 0.08 nm per coordinate.
HARMONIC_CENTRES = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
HARMONIC_STDS = np.array([0.05, 0.08])
HARMONIC_FORCE_CONSTANTS = KT / HARMONIC_STDS**2

# Double well in x, harmonic in y and z: A (x^2 - B^2)^2 + C x + K_YZ (y^2 + z^2) / 2.
WELL_A = 3.0 * KT / 0.1**4  # a barrier of 3 kT between wells at x = -0.1 and 0.1 nm
WELL_B = 0.1
WELL_TILT = 10.0
WELL_K_YZ = KT / 0.05**2
DOUBLE_WELL_START = np.array([[-0.1, 0.0, 0.0]])

HARMONIC_PROPOSALS = {
    "random walk": lambda: GaussianRandomWalk(0.04),
    "independent Gaussian": lambda: IndependentGaussian(0.09, HARMONIC_CENTRES.ravel().tolist()),
}
DOUBLE_WELL_PROPOSALS = {
    "random walk": lambda: GaussianRandomWalk(0.06),
    "drifted walk": lambda: DriftedGaussianWalk(0.06, [0.03, 0.0, 0.0]),
}


# Analytic Systems.


def tethered_particles(count: int = 4, force_constant: float = 20.0) -> openmm.System:
    """Particles of mass 12 in a harmonic tether ``force_constant`` (kJ/mol/nm^2) to the origin."""
    system = openmm.System()
    force = openmm.CustomExternalForce(f"0.5*{force_constant}*(x^2+y^2+z^2)")
    for _ in range(count):
        force.addParticle(system.addParticle(12.0), [])
    system.addForce(force)
    return system


def free_particles(count: int) -> openmm.System:
    """Particles of mass 12 and no forces: every proposal has zero energy change."""
    system = openmm.System()
    for _ in range(count):
        system.addParticle(12.0)
    return system


def harmonic_system() -> openmm.System:
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    for name in ("k", "x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    for centre, k in zip(HARMONIC_CENTRES, HARMONIC_FORCE_CONSTANTS, strict=True):
        force.addParticle(system.addParticle(12.0), [k, *centre])
    system.addForce(force)
    return system


def double_well_system() -> openmm.System:
    system = openmm.System()
    force = openmm.CustomExternalForce(
        f"{WELL_A}*(x^2-{WELL_B}^2)^2+{WELL_TILT}*x+{WELL_K_YZ}*0.5*(y^2+z^2)"
    )
    force.addParticle(system.addParticle(12.0), [])
    system.addForce(force)
    return system


# Exact expectations and the comparison with them.


def batch_means_error(series: np.ndarray, num_batches: int = NUM_BATCHES) -> float:
    usable = len(series) // num_batches * num_batches
    batches = series[:usable].reshape(num_batches, -1).mean(axis=1)
    return float(batches.std(ddof=1) / math.sqrt(num_batches))


def compare(observables: dict[str, tuple[np.ndarray, float]]) -> list[str]:
    """The comparisons that fail: 'name: estimate vs exact (standard error)'."""
    failures = []
    for name, (series, exact) in observables.items():
        estimate, error = float(series.mean()), batch_means_error(series)
        line = f"{name}: {estimate:.5g} vs exact {exact:.5g} (standard error {error:.2g})"
        print(line)
        if not abs(estimate - exact) <= TOLERANCE * error:
            failures.append(line)
    return failures


def harmonic_observables(samples: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    displacement = samples - HARMONIC_CENTRES
    energy = 0.5 * (HARMONIC_FORCE_CONSTANTS[:, None] * displacement**2).sum(axis=(1, 2))
    observables = {"<U>/kT": (energy / KT, 1.5 * len(HARMONIC_STDS))}
    for i, std in enumerate(HARMONIC_STDS):
        for k, axis in enumerate("xyz"):
            observables[f"<{axis}{i} - centre>/std"] = (displacement[:, i, k] / std, 0.0)
        observables[f"<|r{i} - centre|^2>/(3 std^2)"] = (
            (displacement[:, i] ** 2).sum(axis=1) / (3 * std**2),
            1.0,
        )
    return observables


def double_well_exact() -> dict[str, float]:
    """Exact averages by quadrature of the x marginal (y, z are harmonic)."""
    x = np.linspace(-0.4, 0.4, 200_001)
    energy = WELL_A * (x**2 - WELL_B**2) ** 2 + WELL_TILT * x
    weight = np.exp(-(energy - energy.min()) / KT)
    weight /= np.trapezoid(weight, x)
    return {
        "<x>": np.trapezoid(x * weight, x),
        "<x^2>": np.trapezoid(x**2 * weight, x),
        "P(x > 0)": np.trapezoid(np.where(x > 0, weight, 0.0), x),
        "<U>/kT": np.trapezoid(energy * weight, x) / KT + 1.0,
    }


def double_well_observables(samples: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    x, y, z = samples[:, 0, 0], samples[:, 0, 1], samples[:, 0, 2]
    energy = WELL_A * (x**2 - WELL_B**2) ** 2 + WELL_TILT * x + 0.5 * WELL_K_YZ * (y**2 + z**2)
    exact = double_well_exact()
    return {
        "<x>": (x, exact["<x>"]),
        "<x^2>": (x**2, exact["<x^2>"]),
        "P(x > 0)": ((x > 0).astype(float), exact["P(x > 0)"]),
        "<U>/kT": (energy / KT, exact["<U>/kT"]),
    }


def analytic_cases() -> list[tuple]:
    """(system factory, proposal factory, start, observables, num_atoms) of every analytic case."""
    return [
        (harmonic_system, proposal, HARMONIC_CENTRES, harmonic_observables, 2)
        for proposal in HARMONIC_PROPOSALS.values()
    ] + [
        (double_well_system, proposal, DOUBLE_WELL_START, double_well_observables, None)
        for proposal in DOUBLE_WELL_PROPOSALS.values()
    ]


# Deliberately wrong proposals.


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


def sign_flipped_copy(model_file: Path, path: Path) -> Path:
    """The model in ``model_file`` with logQRatio negated (:class:`SignFlipped`), saved to
    ``path`` with the same metadata."""
    module, metadata = load_model(model_file)
    return save_module(_ContractModule(SignFlipped(module), metadata), path, metadata)
