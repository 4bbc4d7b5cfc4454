"""The Metropolis-Hastings rules of the Python samplers, step by step with known energies and
uniforms: rejection of non-finite and chirality-inverting proposals, the acceptance test, the end
of a batch at the first acceptance, the rebased ratios of an independence batch, the adaptive
batch size and the System checks. Their statistical consequences are tested in test_chains.py."""

import math

import numpy as np
import openmm
import pytest
from helpers import free_particles, tethered_particles
from openmm import app

from openmm_timewarp.sampling.metropolis import (
    Outcome,
    batch_size,
    check_system,
    inverted_chirality,
    walk,
)

TETRAHEDRON = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]])
CENTRES = np.array([[0, 1, 2, 3]])
NO_CENTRES = np.zeros((0, 4), dtype=np.int64)


class Uniforms:
    """Hands out the given uniforms in order and counts the draws."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.drawn = 0

    def __call__(self) -> float:
        self.drawn += 1
        return self.values.pop(0)


def outcomes(proposals, log_q_ratios, energies, uniform, independent=False, centres=NO_CENTRES):
    """The outcomes of a walk from TETRAHEDRON (energy 0, kT 1) with each proposal's energy
    given by ``energies`` in order of evaluation."""
    energy_of = iter(energies)
    steps = walk(
        TETRAHEDRON,
        0.0,
        np.asarray(proposals, dtype=np.float64),
        np.asarray(log_q_ratios, dtype=np.float64),
        kT=1.0,
        centres=centres,
        independent=independent,
        energy_of=lambda positions: next(energy_of),
        uniform=uniform,
    )
    return [step.outcome for step in steps]


def test_acceptance_follows_the_energy_and_the_ratio():
    shifted = TETRAHEDRON + 0.01
    # log a = -(1 - 0) + 0.5 = -0.5: accepted when u < exp(-0.5) = 0.607.
    assert outcomes([shifted], [0.5], [1.0], Uniforms(0.6)) == [Outcome.ACCEPTED]
    assert outcomes([shifted], [0.5], [1.0], Uniforms(0.61)) == [Outcome.REJECTED]
    # log a >= 0 accepts without drawing a uniform.
    uniform = Uniforms()
    assert outcomes([shifted], [1.0], [1.0], uniform) == [Outcome.ACCEPTED]
    assert uniform.drawn == 0


def test_a_batch_ends_at_its_first_acceptance_and_the_state_moves():
    proposals = [TETRAHEDRON + 0.01, TETRAHEDRON + 0.02, TETRAHEDRON + 0.03]
    steps = list(
        walk(
            TETRAHEDRON,
            0.0,
            np.array(proposals),
            np.zeros(3),
            kT=1.0,
            centres=NO_CENTRES,
            independent=False,
            energy_of=lambda positions: float(positions[0, 0] * 100.0),  # 1, 2, 3
            uniform=Uniforms(0.9, 0.1),
        )
    )
    assert [step.outcome for step in steps] == [Outcome.REJECTED, Outcome.ACCEPTED]
    np.testing.assert_array_equal(steps[0].positions, TETRAHEDRON)
    assert steps[0].energy == 0.0
    np.testing.assert_array_equal(steps[1].positions, proposals[1])
    assert steps[1].energy == pytest.approx(2.0)


def test_an_independence_batch_goes_on_with_ratios_rebased_on_the_last_acceptance():
    proposals = [TETRAHEDRON + 0.01, TETRAHEDRON + 0.02]
    # Second proposal: log a = 1.5 - 2.0 = -0.5 once rebased (exp = 0.607 < 0.7: rejected); with
    # the ratio taken as it is (1.5 >= 0) it would be accepted.
    rebased = outcomes(proposals, [2.0, 1.5], [0.0, 0.0], Uniforms(0.7), independent=True)
    assert rebased == [Outcome.ACCEPTED, Outcome.REJECTED]
    accepted = outcomes(proposals, [2.0, 1.5], [0.0, 0.0], Uniforms(0.6), independent=True)
    assert accepted == [Outcome.ACCEPTED, Outcome.ACCEPTED]


def test_non_finite_and_chirality_inverting_proposals_are_rejected():
    nan = np.full_like(TETRAHEDRON, math.nan)
    mirrored = TETRAHEDRON * np.array([1.0, 1.0, -1.0])
    shifted = TETRAHEDRON + 0.01
    energy_evaluations = [math.inf, 0.0]  # only proposals that pass the screening are evaluated
    result = outcomes(
        [nan, shifted, mirrored, shifted, shifted],
        [0.0, math.inf, 0.0, 0.0, 0.0],
        energy_evaluations,
        Uniforms(),
        centres=CENTRES,
    )
    assert result == [
        Outcome.NON_FINITE,  # positions
        Outcome.NON_FINITE,  # logQRatio
        Outcome.CHIRALITY,
        Outcome.NON_FINITE,  # energy
        Outcome.ACCEPTED,
    ]
    # Without chiral centres the mirror image is an ordinary proposal.
    assert outcomes([mirrored], [0.0], [0.0], Uniforms(), centres=NO_CENTRES) == [Outcome.ACCEPTED]
    assert inverted_chirality(TETRAHEDRON, np.stack([mirrored, shifted]), CENTRES).tolist() == [
        True,
        False,
    ]


def test_batch_size_adapts_like_the_integrator():
    assert batch_size(0, 50, 64, independent=False, steps_left=1000) == 64  # before an acceptance
    # a = 10 / 100: K = ceil(log 0.1 / log 0.9) = 22.
    assert batch_size(10, 99, 64, independent=False, steps_left=1000) == 22
    assert batch_size(10, 99, 64, independent=True, steps_left=1000) == 64
    assert batch_size(10, 99, 64, independent=True, steps_left=5) == 5
    assert batch_size(99, 99, 64, independent=False, steps_left=1000) == 1


def test_systems_that_cannot_be_sampled_exactly_are_refused():
    check_system(tethered_particles(4), TETRAHEDRON)
    constrained = free_particles(4)
    constrained.addConstraint(0, 1, 0.1)
    virtual = free_particles(4)
    virtual.setVirtualSite(3, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    periodic = free_particles(4)
    force = openmm.NonbondedForce()
    force.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    for _ in range(4):
        force.addParticle(0.0, 0.3, 0.0)
    periodic.addForce(force)
    topology = app.Topology()
    topology.addAtom("C", app.element.carbon, topology.addResidue("X", topology.addChain()))
    for system, positions, other_topology, message in [
        (constrained, TETRAHEDRON, None, "constraints"),
        (virtual, TETRAHEDRON, None, "virtual sites"),
        (periodic, TETRAHEDRON, None, "periodic"),
        (free_particles(4), TETRAHEDRON[:3], None, r"shape \(4, 3\)"),
        (free_particles(4), TETRAHEDRON, topology, "atom count"),
    ]:
        with pytest.raises(ValueError, match=f"^chain x: .*{message}"):
            check_system(system, positions, other_topology, "chain x")
