"""Boltzmann exactness of TimewarpIntegrator on systems with known equilibrium distributions.

Each chain's averages are compared with exact values within TOLERANCE standard errors; the
standard errors come from batch means, so they include the chain's autocorrelation (the cases and
the comparison are in tests/helpers.py, shared with the many-chain sampler's tests).  A chain
whose proposal reports logQRatio with the wrong sign must fail the same comparison, and so must a
state-dependent proposal that declares itself independent (its batches would wrongly survive
acceptances).
"""

import numpy as np
import openmm
import pytest
from helpers import (
    BURN_IN,
    DOUBLE_WELL_PROPOSALS,
    DOUBLE_WELL_START,
    HARMONIC_CENTRES,
    HARMONIC_PROPOSALS,
    TEMPERATURE,
    THIN,
    DeclaredIndependent,
    SignFlipped,
    analytic_cases,
    compare,
    double_well_observables,
    double_well_system,
    harmonic_observables,
    harmonic_system,
    save_without_checks,
)

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.proposals.simple import export_simple_proposal

STEPS = 30_000
MAX_BATCH = 64


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


@pytest.mark.parametrize("proposal", list(HARMONIC_PROPOSALS))
def test_harmonic_array_is_sampled_exactly(proposal, tmp_path):
    path = export_simple_proposal(HARMONIC_PROPOSALS[proposal](), tmp_path / "m.pt", num_atoms=2)
    samples = run_chain(harmonic_system(), path, HARMONIC_CENTRES, seed=11)
    assert compare(harmonic_observables(samples)) == []


@pytest.mark.parametrize("proposal", list(DOUBLE_WELL_PROPOSALS))
def test_double_well_is_sampled_exactly(proposal, tmp_path):
    path = export_simple_proposal(DOUBLE_WELL_PROPOSALS[proposal](), tmp_path / "m.pt")
    samples = run_chain(double_well_system(), path, DOUBLE_WELL_START, seed=12)
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
    samples = run_chain(double_well_system(), path, DOUBLE_WELL_START, seed=12)
    assert compare(double_well_observables(samples)) != []


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
