"""Boltzmann exactness of TimewarpIntegrator on systems with known equilibrium distributions.

Each chain's averages are compared with exact values within TOLERANCE standard errors; the
standard errors come from batch means, so they include the chain's autocorrelation.  A chain
whose proposal reports logQRatio with the wrong sign must fail the same comparison, and so must a
state-dependent proposal that declares itself independent (its batches would wrongly survive
acceptances).
"""

import math

import numpy as np
import openmm
import pytest
from openmm import unit
from proposal_wrappers import DeclaredIndependent, SignFlipped, save_without_checks

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.proposals.simple import (
    DriftedGaussianWalk,
    GaussianRandomWalk,
    IndependentGaussian,
    export_simple_proposal,
)

TEMPERATURE = 300.0
KT = (unit.MOLAR_GAS_CONSTANT_R * TEMPERATURE * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
TOLERANCE = 4.0
NUM_BATCHES = 25
STEPS = 30_000
THIN = 10
BURN_IN = 1_000
MAX_BATCH = 64

# Harmonic oscillator array: two particles, standard deviations 0.05 and 0.08 nm per coordinate.
HARMONIC_CENTRES = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
HARMONIC_STDS = np.array([0.05, 0.08])
HARMONIC_FORCE_CONSTANTS = KT / HARMONIC_STDS**2

# Double well in x, harmonic in y and z: A (x^2 - B^2)^2 + C x + K_YZ (y^2 + z^2) / 2.
WELL_A = 3.0 * KT / 0.1**4  # a barrier of 3 kT between wells at x = -0.1 and 0.1 nm
WELL_B = 0.1
WELL_TILT = 10.0
WELL_K_YZ = KT / 0.05**2


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


def run_chain(
    system: openmm.System, model_path, start: np.ndarray, seed: int, steps: int = STEPS
) -> np.ndarray:
    """Positions every THIN steps of a chain of `steps` after BURN_IN: [samples, atoms, 3]."""
    integrator = TimewarpIntegrator(
        model_path, TEMPERATURE, atom_types=[0] * len(start), chiral_centres=[], seed=seed
    )
    integrator.setMaxProposalBatch(MAX_BATCH)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(start)
    integrator.step(BURN_IN)
    samples = []
    for _ in range(steps // THIN):
        integrator.step(THIN)
        samples.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    assert integrator.getNumProposed() == BURN_IN + steps
    assert 0.05 < integrator.getAcceptanceRate() < 0.95
    if integrator.getIndependentProposals():  # batches survive acceptances: full batches only
        assert integrator.getNumModelCalls() <= (BURN_IN + steps) // MAX_BATCH + 1
    else:
        assert integrator.getNumModelCalls() > integrator.getNumAccepted()
    return np.array(samples)


def batch_means_error(series: np.ndarray) -> float:
    usable = len(series) // NUM_BATCHES * NUM_BATCHES
    batches = series[:usable].reshape(NUM_BATCHES, -1).mean(axis=1)
    return float(batches.std(ddof=1) / math.sqrt(NUM_BATCHES))


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


HARMONIC_PROPOSALS = {
    "random walk": lambda: GaussianRandomWalk(0.04),
    "independent Gaussian": lambda: IndependentGaussian(0.09, HARMONIC_CENTRES.ravel().tolist()),
}
DOUBLE_WELL_PROPOSALS = {
    "random walk": lambda: GaussianRandomWalk(0.06),
    "drifted walk": lambda: DriftedGaussianWalk(0.06, [0.03, 0.0, 0.0]),
}


@pytest.mark.parametrize("proposal", list(HARMONIC_PROPOSALS))
def test_harmonic_array_is_sampled_exactly(proposal, tmp_path):
    path = export_simple_proposal(HARMONIC_PROPOSALS[proposal](), tmp_path / "m.pt", num_atoms=2)
    samples = run_chain(harmonic_system(), path, HARMONIC_CENTRES, seed=11)
    assert compare(harmonic_observables(samples)) == []


@pytest.mark.parametrize("proposal", list(DOUBLE_WELL_PROPOSALS))
def test_double_well_is_sampled_exactly(proposal, tmp_path):
    path = export_simple_proposal(DOUBLE_WELL_PROPOSALS[proposal](), tmp_path / "m.pt")
    samples = run_chain(double_well_system(), path, np.array([[-0.1, 0.0, 0.0]]), seed=12)
    assert compare(double_well_observables(samples)) == []


def test_harmonic_check_fails_with_flipped_log_q_ratio(tmp_path):
    proposal = SignFlipped(HARMONIC_PROPOSALS["independent Gaussian"]())
    path = export_simple_proposal(proposal, tmp_path / "m.pt", num_atoms=2)
    samples = run_chain(harmonic_system(), path, HARMONIC_CENTRES, seed=11)
    assert compare(harmonic_observables(samples)) != []


def test_harmonic_check_fails_when_a_walk_declares_itself_independent(tmp_path):
    proposal = DeclaredIndependent(HARMONIC_PROPOSALS["random walk"]())
    with pytest.raises(ValueError, match="declares itself independent"):
        export_simple_proposal(proposal, tmp_path / "m.pt", num_atoms=2)
    path = save_without_checks(proposal, tmp_path / "m.pt", num_atoms=2)
    samples = run_chain(harmonic_system(), path, HARMONIC_CENTRES, seed=11)
    assert compare(harmonic_observables(samples)) != []


def test_double_well_check_fails_with_flipped_log_q_ratio(tmp_path):
    proposal = SignFlipped(DOUBLE_WELL_PROPOSALS["drifted walk"]())
    path = export_simple_proposal(proposal, tmp_path / "m.pt")
    samples = run_chain(double_well_system(), path, np.array([[-0.1, 0.0, 0.0]]), seed=12)
    assert compare(double_well_observables(samples)) != []


def analytic_cases() -> list[tuple]:
    """(system factory, proposal factory, start, observables, num_atoms) of every analytic case."""
    return [
        (harmonic_system, proposal, HARMONIC_CENTRES, harmonic_observables, 2)
        for proposal in HARMONIC_PROPOSALS.values()
    ] + [
        (double_well_system, proposal, np.array([[-0.1, 0.0, 0.0]]), double_well_observables, None)
        for proposal in DOUBLE_WELL_PROPOSALS.values()
    ]


@pytest.mark.slow
def test_long_chains_are_exact(tmp_path):
    """Ten times longer chains of every proposal above: tolerances three times tighter."""
    failures = []
    for index, (make_system, proposal, start, observables, num_atoms) in enumerate(
        analytic_cases()
    ):
        path = export_simple_proposal(proposal(), tmp_path / f"{index}.pt", num_atoms=num_atoms)
        samples = run_chain(make_system(), path, start, seed=100 + index, steps=10 * STEPS)
        failures += compare(observables(samples))
    assert failures == []
