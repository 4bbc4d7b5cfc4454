"""Two-temperature replica exchange with TimewarpIntegrator.setTemperature on a harmonic well.

A minimal exchange loop, as multi-state samplers run it: each replica's Context keeps its
configuration, and an accepted exchange swaps the temperatures of the two integrators
(min(1, exp((beta_a - beta_b) (U_a - U_b))), the thermodynamic states move, not the positions).
Samples are collected per temperature, and the second moment of the well at each temperature is
compared with its exact value within TOLERANCE standard errors (batch means).  The control runs
the same loop with integrators that keep their construction temperature and must fail.
"""

import math

import numpy as np
import openmm
import pytest
from helpers import batch_means_error, tethered_particles
from openmm import unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.energy import thermal_energy
from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal

TEMPERATURES = (300.0, 600.0)
STD_AT_FIRST = 0.05  # nm per coordinate at the first temperature
FORCE_CONSTANT = thermal_energy(TEMPERATURES[0]) / STD_AT_FIRST**2
EXCHANGES = 3_000
STEPS_PER_EXCHANGE = 5
NUM_BATCHES = 20
TOLERANCE = 4.0


def harmonic_well() -> openmm.System:
    return tethered_particles(1, FORCE_CONSTANT)


def run_exchange(model, apply_temperatures: bool) -> tuple[dict[float, np.ndarray], float]:
    """Squared distances from the centre sampled at each temperature, and the exchange rate."""
    replicas = []
    for index, temperature in enumerate(TEMPERATURES):
        integrator = TimewarpIntegrator(model, temperature, atom_types=[0], seed=21 + index)
        context = openmm.Context(
            harmonic_well(), integrator, openmm.Platform.getPlatformByName("Reference")
        )
        context.setPositions([[0.0, 0.0, 0.0]])
        replicas.append((integrator, context))
    temperature_of = list(TEMPERATURES)  # the thermodynamic state each replica holds
    random = np.random.default_rng(5)
    samples: dict[float, list[float]] = {temperature: [] for temperature in TEMPERATURES}
    accepted = 0
    for _ in range(EXCHANGES):
        energies, squared = [], []
        for integrator, context in replicas:
            integrator.step(STEPS_PER_EXCHANGE)
            state = context.getState(getPositions=True, getEnergy=True)
            energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
            squared.append(float((state.getPositions(asNumpy=True)._value ** 2).sum()))
        for replica, temperature in enumerate(temperature_of):
            samples[temperature].append(squared[replica])
        log_acceptance = (
            1 / thermal_energy(temperature_of[0]) - 1 / thermal_energy(temperature_of[1])
        ) * (energies[0] - energies[1])
        if log_acceptance >= 0 or random.random() < math.exp(log_acceptance):
            accepted += 1
            temperature_of.reverse()
            if apply_temperatures:
                for (integrator, _), temperature in zip(replicas, temperature_of, strict=True):
                    integrator.setTemperature(temperature * unit.kelvin)
    return {t: np.array(values) for t, values in samples.items()}, accepted / EXCHANGES


def failures(samples: dict[float, np.ndarray]) -> list[str]:
    """Temperatures whose <r^2> / (3 kT / k) differs from 1 by more than TOLERANCE errors."""
    failed = []
    for temperature, squared in samples.items():
        ratio = squared / (3 * thermal_energy(temperature) / FORCE_CONSTANT)
        error = batch_means_error(ratio, NUM_BATCHES)
        line = f"{temperature} K: <r^2>/(3kT/k) = {ratio.mean():.4f} (standard error {error:.2g})"
        print(line)
        if abs(ratio.mean() - 1.0) > TOLERANCE * error:
            failed.append(line)
    return failed


@pytest.fixture(scope="module")
def walk_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("models") / "walk.pt"
    return str(export_simple_proposal(GaussianRandomWalk(0.06), path, num_atoms=1))


def test_replica_exchange_samples_both_temperatures(walk_model):
    samples, exchange_rate = run_exchange(walk_model, apply_temperatures=True)
    assert 0.1 < exchange_rate < 0.9
    assert failures(samples) == []


def test_replica_exchange_check_fails_when_temperatures_are_not_applied(walk_model):
    samples, _ = run_exchange(walk_model, apply_temperatures=False)
    assert failures(samples) != []


def test_openmmtools_thermodynamic_state_sets_the_temperature(walk_model):
    states = pytest.importorskip("openmmtools.states")
    integrator = TimewarpIntegrator(walk_model, 300, atom_types=[0])
    context = states.ThermodynamicState(harmonic_well(), 300 * unit.kelvin).create_context(
        integrator, openmm.Platform.getPlatformByName("Reference")
    )
    hot = states.ThermodynamicState(harmonic_well(), 600 * unit.kelvin)
    hot.apply_to_context(context)
    assert integrator.getTemperature() == 600 * unit.kelvin
    assert hot.is_context_compatible(context)
