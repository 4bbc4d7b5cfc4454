"""TimewarpIntegrator: semantics, reproducibility, checkpoints, serialization and refusals."""

import hashlib
import warnings

import numpy as np
import openmm
import pytest
import torch
from helpers import NonFinite, free_particles, tethered_particles
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator, timewarpplugin
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.models.contract import ModelMetadata, save_module
from openmm_timewarp.proposals.simple import (
    GaussianRandomWalk,
    IndependentGaussian,
    export_simple_proposal,
)
from openmm_timewarp.sampling.diagnostics import STUCK_AFTER_PROPOSALS, StuckChainWarning

TETRAHEDRON = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]])
REFERENCE = openmm.Platform.getPlatformByName("Reference")


class Shift(torch.nn.Module):
    """x' = x + shift (noise ignored): a deterministic move with logQRatio 0."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.noise_dim: int = 1
        self.shift: float = shift

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals = positions.unsqueeze(0) + self.shift + 0.0 * noise
        return proposals, torch.zeros(noise.shape[0])


class Mirror(torch.nn.Module):
    """x' = -x: inverts every chiral centre."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim: int = 1

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return -positions.unsqueeze(0) + 0.0 * noise, torch.zeros(noise.shape[0])


class BreaksBeyond(torch.nn.Module):
    """Moves by +0.3 nm in x, but returns a wrongly shaped output once particle 0 is past 0.5 nm."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim: int = 1
        self.tau: float = 2.0
        self.num_atoms: int = 0
        self.num_atom_types: int = 1

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals = positions.unsqueeze(0) + 0.0 * noise
        proposals[:, :, 0] += 0.3
        if bool(positions[0, 0] > 0.5):
            return proposals[:, :, :2], torch.zeros(noise.shape[0])
        return proposals, torch.zeros(noise.shape[0])


def script_and_save(module: torch.nn.Module, path) -> str:
    """Save a module as TorchScript with metadata, bypassing export's contract checks."""
    return str(save_module(module, path, _metadata()))


def _metadata(num_atoms=None) -> ModelMetadata:
    return ModelMetadata(
        name="test",
        family="simple",
        tau_ps=2.0,
        temperature_K=300.0,
        forcefield="any",
        atom_type_scheme="element",
        atom_types=["X"],
        num_atoms=num_atoms,
    )


class BadOutput(torch.nn.Module):
    """Returns outputs of a chosen kind of wrongness."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.noise_dim: int = 3
        self.tau: float = 2.0
        self.num_atoms: int = 0
        self.num_atom_types: int = 1
        self.kind = kind

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals = positions.unsqueeze(0) + noise
        log_q_ratio = torch.zeros(noise.shape[0])
        if self.kind == "proposal shape":
            return proposals[:, :, :2], log_q_ratio
        if self.kind == "proposal dtype":
            return proposals.double(), log_q_ratio
        if self.kind == "ratio shape":
            return proposals, torch.zeros(noise.shape[0], 1)
        if self.kind == "ratio dtype":
            return proposals, log_q_ratio.double()
        return proposals, log_q_ratio


class NoTau(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.noise_dim: int = 3
        self.num_atoms: int = 0
        self.num_atom_types: int = 1

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return positions.unsqueeze(0) + noise, torch.zeros(noise.shape[0])


@pytest.fixture(scope="module")
def walk_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("models") / "walk.pt"
    return str(export_simple_proposal(GaussianRandomWalk(0.05), path, tau_ps=2.0))


def make_context(model, system=None, positions=TETRAHEDRON, seed=5, **options):
    system = system or tethered_particles(len(positions))
    integrator = TimewarpIntegrator(
        model, 300 * unit.kelvin, atom_types=[0] * system.getNumParticles(), seed=seed, **options
    )
    context = openmm.Context(system, integrator, REFERENCE)
    context.setPositions(positions)
    return integrator, context


def positions_of(context) -> np.ndarray:
    return context.getState(getPositions=True).getPositions(asNumpy=True)._value


def counters(integrator) -> tuple:
    return (
        integrator.getNumSteps(),
        integrator.getNumProposed(),
        integrator.getNumAccepted(),
        integrator.getNumRejectedNonFinite(),
        integrator.getNumRejectedChirality(),
        integrator.getNumModelCalls(),
    )


def test_step_counts_time_and_velocities(walk_model):
    integrator, context = make_context(walk_model)
    integrator.step(200)
    state = context.getState(getVelocities=True, getEnergy=True)
    assert integrator.getNumSteps() == integrator.getNumProposed() == 200
    assert 0 < integrator.getNumAccepted() < 200
    assert integrator.getAcceptanceRate() == pytest.approx(integrator.getNumAccepted() / 200)
    assert 1 <= integrator.getNumModelCalls() <= 200
    assert state.getTime().value_in_unit(unit.picosecond) == pytest.approx(400.0)
    assert integrator.getStepSize().value_in_unit(unit.picosecond) == pytest.approx(2.0)
    assert context.getStepCount() == 200
    assert state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) > 0
    assert integrator.getModelSeconds() > 0 and integrator.getEnergySeconds() > 0
    integrator.resetStatistics()
    assert counters(integrator) == (0, 0, 0, 0, 0, 0)
    assert integrator.getModelSeconds() == integrator.getEnergySeconds() == 0.0


def test_velocities_follow_maxwell_boltzmann(walk_model):
    integrator, context = make_context(walk_model)
    kinetic = []
    for _ in range(400):
        integrator.step(1)
        kinetic.append(context.getState(getEnergy=True).getKineticEnergy())
    kinetic = np.array([energy.value_in_unit(unit.kilojoule_per_mole) for energy in kinetic])
    kt = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    # Independent draws: the mean of 12 squared normals x kT / 2 has standard deviation sqrt(6) kT.
    error = np.sqrt(6) * kt / np.sqrt(len(kinetic))
    assert abs(kinetic.mean() - 6 * kt) < 4 * error


@pytest.mark.skipif(
    "CPU"
    not in [
        openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
    ],
    reason="no CPU platform",
)
def test_runs_on_the_cpu_platform(walk_model):
    integrator = TimewarpIntegrator(walk_model, 300, atom_types=[0] * 4, seed=5)
    context = openmm.Context(
        tethered_particles(), integrator, openmm.Platform.getPlatformByName("CPU")
    )
    context.setPositions(TETRAHEDRON)
    integrator.step(100)
    assert 0 < integrator.getNumAccepted() < 100
    assert context.getState().getTime().value_in_unit(unit.picosecond) == pytest.approx(200.0)


def test_accessors_and_metadata(walk_model):
    integrator, _ = make_context(walk_model, max_proposal_batch=7)
    assert integrator.getTemperature() == 300 * unit.kelvin
    assert integrator.getMaxProposalBatch() == 7
    assert integrator.getProposalBatchSize() == 7  # no acceptance yet: the maximum
    assert integrator.getNoiseDim() == 3
    assert integrator.getMetadata().family == "simple"
    assert integrator.getModelPath().endswith("walk.pt")
    integrator.setExplorationMode(True, 5 * unit.kilocalorie_per_mole)
    assert integrator.getExplorationMode()
    assert integrator.getExplorationThreshold().value_in_unit(
        unit.kilojoule_per_mole
    ) == pytest.approx(20.92)


def test_default_batch_depends_on_the_model(walk_model, tmp_path):
    conditional, _ = make_context(walk_model)
    assert conditional.getMaxProposalBatch() == TimewarpIntegrator.DEFAULT_CONDITIONAL_BATCH == 64
    path = export_simple_proposal(IndependentGaussian(0.1), tmp_path / "independent.pt")
    independent, _ = make_context(path)
    assert independent.getMaxProposalBatch() == TimewarpIntegrator.DEFAULT_INDEPENDENT_BATCH
    assert independent.getProposalBatchSize() == 1024
    independent.step(1)
    assert independent.getNumCachedProposals() == 1023
    chosen, _ = make_context(path, max_proposal_batch=16)  # the user's setting wins
    assert chosen.getProposalBatchSize() == 16


def test_model_checksum_and_metadata_come_from_the_one_load(walk_model):
    integrator, _ = make_context(walk_model)
    with open(walk_model, "rb") as file:
        assert integrator.getModelChecksum() == hashlib.sha1(file.read()).hexdigest()
    assert ModelMetadata.from_json(integrator.getModelMetadata()).name == "simple"


def test_the_context_uses_the_model_loaded_at_construction(walk_model, tmp_path):
    copy = tmp_path / "copy.pt"
    copy.write_bytes(open(walk_model, "rb").read())
    integrator = TimewarpIntegrator(copy, 300, atom_types=[0] * 4, seed=5)
    copy.unlink()  # the kernel must not read the file again
    context = openmm.Context(tethered_particles(), integrator, REFERENCE)
    context.setPositions(TETRAHEDRON)
    integrator.step(20)
    assert integrator.getNumModelCalls() >= 1


def test_model_threads_are_the_models_own(walk_model):
    integrator, _ = make_context(walk_model)
    assert integrator.getModelThreads() == 1  # the measured-fastest default
    torch.set_num_threads(2)
    try:
        integrator.step(50)
        assert torch.get_num_threads() == 2  # the process's setting is restored after each call
        integrator.setModelThreads(0)
        integrator.step(50)
    finally:
        torch.set_num_threads(1)
    with pytest.raises(openmm.OpenMMException, match="model threads must be at least 0"):
        integrator.setModelThreads(-1)
    with pytest.raises(openmm.OpenMMException, match='model device must be "auto"'):
        integrator.setModelDevice("gpu")


def test_set_temperature_takes_units_and_sets_the_velocity_draw(walk_model):
    integrator, context = make_context(walk_model, seed=4)
    integrator.setTemperature(600 * unit.kelvin)
    assert integrator.getTemperature() == 600 * unit.kelvin
    integrator.setTemperature(450)  # a number is in kelvin
    assert integrator.getTemperature() == 450 * unit.kelvin
    kinetic = []
    for _ in range(400):
        integrator.step(1)
        kinetic.append(context.getState(getEnergy=True).getKineticEnergy())
    kinetic = np.array([energy.value_in_unit(unit.kilojoule_per_mole) for energy in kinetic])
    kt = (unit.MOLAR_GAS_CONSTANT_R * 450 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    assert abs(kinetic.mean() - 6 * kt) < 4 * np.sqrt(6) * kt / np.sqrt(len(kinetic))
    with pytest.raises(openmm.OpenMMException, match="temperature must be positive"):
        integrator.setTemperature(-1 * unit.kelvin)
    with pytest.raises(ValueError, match="compatible with"):
        integrator.setTemperature(1 * unit.nanometer)


def test_cache_serves_rejections_and_adapts_batch(walk_model):
    integrator, context = make_context(walk_model, max_proposal_batch=16)
    integrator.step(500)
    calls = integrator.getNumModelCalls()
    # Every acceptance discards the cache; rejections are served from it.
    assert integrator.getNumAccepted() <= calls < 500
    rate = integrator.getAcceptanceRate()
    expected = int(np.clip(np.ceil(np.log(0.1) / np.log(1 - rate)), 1, 16))
    assert abs(integrator.getProposalBatchSize() - expected) <= 1
    # An outside change of the positions discards the cache: the next step calls the model.
    calls = integrator.getNumModelCalls()
    context.setPositions(TETRAHEDRON)
    integrator.step(1)
    assert integrator.getNumModelCalls() == calls + 1


def test_independence_proposals_survive_acceptances(tmp_path):
    # Close to the tether's Boltzmann distribution (0.35 nm per coordinate): most are accepted.
    path = export_simple_proposal(IndependentGaussian(0.3), tmp_path / "m.pt", tau_ps=2.0)
    integrator, context = make_context(str(path), seed=7, max_proposal_batch=32)
    assert integrator.getIndependentProposals()
    assert integrator.getProposalBatchSize() == 32
    integrator.step(320)
    assert integrator.getNumAccepted() > integrator.getNumModelCalls() == 10
    # Checkpoint after an acceptance, mid-batch: the ratio offset of the held state is restored.
    for _ in range(100):
        accepted = integrator.getNumAccepted()
        integrator.step(1)
        if integrator.getNumAccepted() > accepted and integrator.getNumCachedProposals() > 0:
            break
    assert 0 < integrator.getNumCachedProposals() < 32
    checkpoint = context.createCheckpoint()
    integrator.step(100)
    expected, expected_counters = positions_of(context), counters(integrator)
    context.loadCheckpoint(checkpoint)
    integrator.step(100)
    np.testing.assert_array_equal(positions_of(context), expected)
    assert counters(integrator) == expected_counters
    # An outside change of the positions still discards the batch.
    calls = integrator.getNumModelCalls()
    context.setPositions(TETRAHEDRON)
    integrator.step(1)
    assert integrator.getNumModelCalls() == calls + 1


def test_rejected_proposals_come_from_the_cache(tmp_path):
    # A move uphill by far more than kT is never accepted: one model call serves all proposals.
    path = export_simple_proposal(Shift(3.0), tmp_path / "shift.pt")
    integrator, context = make_context(path, max_proposal_batch=8)
    integrator.step(24)
    assert integrator.getNumAccepted() == 0
    assert integrator.getNumModelCalls() == 3
    np.testing.assert_array_equal(positions_of(context), TETRAHEDRON)


def test_exploration_mode_accepts_by_threshold(tmp_path):
    # Shift by 1 nm in x, y, z of 4 tethered particles: dU is known exactly.
    path = export_simple_proposal(Shift(1.0), tmp_path / "shift.pt")
    shifted = TETRAHEDRON + 1.0
    delta = 10 * ((shifted**2).sum() - (TETRAHEDRON**2).sum())
    assert delta / 2.494 > 20  # MH would (practically) never accept it
    integrator, context = make_context(path, exploration=True, exploration_threshold=delta + 0.01)
    integrator.step(1)
    assert integrator.getNumAccepted() == 1
    np.testing.assert_allclose(positions_of(context), shifted, atol=1e-6)
    integrator, context = make_context(path, exploration=True, exploration_threshold=delta - 0.01)
    integrator.step(5)
    assert integrator.getNumAccepted() == 0
    integrator, context = make_context(path)
    integrator.step(5)
    assert integrator.getNumAccepted() == 0


def test_chirality_inversion_is_rejected(tmp_path):
    path = export_simple_proposal(Mirror(), tmp_path / "mirror.pt")
    system = free_particles(4)  # no forces: every proposal has zero energy change
    integrator, context = make_context(path, system=system, chiral_centres=[(0, 1, 2, 3)])
    integrator.step(10)
    assert integrator.getNumRejectedChirality() == 10
    assert integrator.getNumAccepted() == 0
    np.testing.assert_array_equal(positions_of(context), TETRAHEDRON)
    # Without the guard the same mirror image is accepted.
    integrator, context = make_context(path, system=system, chiral_centres=[])
    integrator.step(1)
    assert integrator.getNumAccepted() == 1
    np.testing.assert_allclose(positions_of(context), -TETRAHEDRON)


def test_non_finite_proposals_are_rejected_and_counted(tmp_path):
    path = export_simple_proposal(NonFinite(), tmp_path / "nonfinite.pt")
    integrator, context = make_context(path, max_proposal_batch=4)
    with pytest.warns(RuntimeWarning, match="all 12 proposals so far were non-finite"):
        integrator.step(12)
    assert integrator.getNumRejectedNonFinite() == 12
    assert integrator.getNumAccepted() == 0
    assert np.isfinite(positions_of(context)).all()


def test_non_finite_energy_is_rejected_and_counted(tmp_path):
    path = export_simple_proposal(Shift(0.5), tmp_path / "shift.pt")
    system = openmm.System()
    force = openmm.CustomExternalForce("select(step(x-0.3), 1/0, 0)")
    force.addParticle(system.addParticle(12.0), [])
    system.addForce(force)
    integrator, context = make_context(path, system=system, positions=np.zeros((1, 3)))
    integrator.step(3)
    assert integrator.getNumRejectedNonFinite() == 3
    np.testing.assert_array_equal(positions_of(context), np.zeros((1, 3)))


def test_same_seed_same_trajectory_whatever_the_chunking(walk_model):
    first, first_context = make_context(walk_model, seed=42)
    first.step(300)
    second, second_context = make_context(walk_model, seed=42)
    for _ in range(30):
        second.step(10)
    np.testing.assert_array_equal(positions_of(first_context), positions_of(second_context))
    assert counters(first) == counters(second)
    other, other_context = make_context(walk_model, seed=43)
    other.step(300)
    assert not np.array_equal(positions_of(first_context), positions_of(other_context))


def test_checkpoint_restores_an_identical_continuation(walk_model):
    integrator, context = make_context(walk_model, seed=7)
    integrator.step(37)
    for _ in range(100):  # checkpoint mid-batch, while the cache holds unused proposals
        if integrator.getNumCachedProposals() > 0:
            break
        integrator.step(1)
    assert integrator.getNumCachedProposals() > 0
    checkpoint = context.createCheckpoint()
    saved_counters = counters(integrator)
    integrator.step(150)
    expected = positions_of(context)
    expected_counters = counters(integrator)

    context.loadCheckpoint(checkpoint)
    assert counters(integrator) == saved_counters
    integrator.step(150)
    np.testing.assert_array_equal(positions_of(context), expected)
    assert counters(integrator) == expected_counters

    fresh, fresh_context = make_context(walk_model, seed=99)
    fresh_context.loadCheckpoint(checkpoint)
    fresh.step(150)
    np.testing.assert_array_equal(positions_of(fresh_context), expected)
    assert counters(fresh) == expected_counters


def test_xml_round_trip(walk_model):
    integrator, context = make_context(walk_model, seed=3, max_proposal_batch=9)
    integrator.setExplorationMode(True, 123.0)
    integrator.setExplorationMode(False, 123.0)
    integrator.setTemperature(310 * unit.kelvin)
    integrator.setModelThreads(2)
    integrator.setModelDevice("cpu")
    xml = openmm.XmlSerializer.serialize(integrator)
    restored = TimewarpIntegrator.cast(openmm.XmlSerializer.deserialize(xml))
    assert restored.getModelPath() == integrator.getModelPath()
    assert restored.getModelChecksum() == integrator.getModelChecksum()
    assert restored.getTemperature() == 310 * unit.kelvin
    assert restored.getModelThreads() == 2
    assert restored.getModelDevice() == "cpu"
    assert restored.getMaxProposalBatch() == 9
    assert restored.getExplorationThreshold() == 123.0 * unit.kilojoule_per_mole
    assert restored.getRandomNumberSeed() == 3
    assert list(restored.getAtomTypes()) == [0, 0, 0, 0]
    assert restored.getMetadata().name == "simple"
    restored_context = openmm.Context(tethered_particles(), restored, REFERENCE)
    restored_context.setPositions(TETRAHEDRON)
    integrator.step(100)
    restored.step(100)
    np.testing.assert_array_equal(positions_of(context), positions_of(restored_context))
    with pytest.raises(TypeError):
        TimewarpIntegrator.cast(openmm.VerletIntegrator(0.001))
    # Version 1 stored the model's path only; it is still read (from that path).
    legacy = xml.replace(
        'type="TimewarpIntegrator (import openmm_timewarp)"', 'type="TimewarpIntegrator"'
    )
    legacy = legacy.replace('version="2"', 'version="1"')
    restored = TimewarpIntegrator.cast(openmm.XmlSerializer.deserialize(legacy))
    assert restored.getModelChecksum() == integrator.getModelChecksum()


def test_works_with_simulation_and_reporters(walk_model, tmp_path):
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(4):
        topology.addAtom("C", app.element.carbon, topology.addResidue("UNK", chain))
    integrator = TimewarpIntegrator(walk_model, 300, atom_types=[0] * 4, seed=1)
    simulation = app.Simulation(topology, tethered_particles(), integrator, REFERENCE)
    simulation.context.setPositions(TETRAHEDRON)
    log = tmp_path / "log.csv"
    simulation.reporters += [
        app.StateDataReporter(
            str(log), 10, step=True, time=True, potentialEnergy=True, temperature=True
        ),
        app.DCDReporter(str(tmp_path / "traj.dcd"), 10),
        app.CheckpointReporter(str(tmp_path / "state.chk"), 25),
    ]
    simulation.step(50)
    rows = log.read_text().splitlines()
    assert len(rows) == 6
    assert rows[-1].startswith("50,100.0")
    assert (tmp_path / "traj.dcd").stat().st_size > 0
    simulation.loadCheckpoint(str(tmp_path / "state.chk"))
    assert simulation.currentStep == 50


def test_topology_gives_atom_types(tmp_path):
    path = export_simple_proposal(
        GaussianRandomWalk(0.05), tmp_path / "elements.pt", atom_types=("H", "C")
    )
    topology = app.Topology()
    residue = topology.addResidue("UNK", topology.addChain())
    for element in (app.element.carbon, app.element.hydrogen, app.element.carbon):
        topology.addAtom(element.symbol, element, residue)
    integrator = TimewarpIntegrator(path, 300, topology=topology)
    assert list(integrator.getAtomTypes()) == [1, 0, 1]
    assert list(integrator.getChiralCentres()) == []
    with pytest.raises(ValueError, match="topology"):
        TimewarpIntegrator(path, 300)


def test_alanine_dipeptide_guards_its_chiral_centre(tmp_path):
    peptide = build_peptide("A")
    system = create_system(peptide.topology)
    elements = sorted({atom.element.symbol for atom in peptide.topology.atoms()})
    runs = {}
    for name, model in (("mirror", Mirror()), ("walk", GaussianRandomWalk(0.001))):
        path = export_simple_proposal(model, tmp_path / f"{name}.pt", atom_types=elements)
        integrator = TimewarpIntegrator(path, 310, topology=peptide.topology, seed=4)
        assert len(integrator.getChiralCentres()) == 4  # (CA, N, C, CB) of the alanine
        context = openmm.Context(system, integrator, REFERENCE)
        context.setPositions(peptide.positions)
        integrator.step(20)
        runs[name] = integrator
    assert runs["mirror"].getNumRejectedChirality() == 20
    assert runs["walk"].getNumRejectedChirality() == 0
    assert runs["walk"].getNumAccepted() > 0


def test_a_step_that_throws_changes_nothing(tmp_path):
    path = script_and_save(BreaksBeyond(), tmp_path / "breaks.pt")
    system = free_particles(4)
    integrator, context = make_context(path, system=system, seed=2)
    context.setVelocitiesToTemperature(300)
    before = context.getState(getPositions=True, getVelocities=True)
    with pytest.raises(openmm.OpenMMException, match="proposals must be float32 of shape"):
        integrator.step(5)  # two moves accepted, then the model breaks
    after = context.getState(getPositions=True, getVelocities=True)
    np.testing.assert_array_equal(
        after.getPositions(asNumpy=True), before.getPositions(asNumpy=True)
    )
    np.testing.assert_array_equal(
        after.getVelocities(asNumpy=True), before.getVelocities(asNumpy=True)
    )
    assert after.getTime() == before.getTime()
    assert context.getStepCount() == 0
    assert counters(integrator) == (0, 0, 0, 0, 0, 0)
    integrator.step(2)
    assert integrator.getNumAccepted() == 2


@pytest.mark.parametrize(
    "kind, message",
    [
        ("proposal shape", "proposals must be float32 of shape"),
        ("proposal dtype", "proposals must be float32 of shape"),
        ("ratio shape", "logQRatio must be float32 of shape"),
        ("ratio dtype", "logQRatio must be float32 of shape"),
    ],
)
def test_refuses_model_output_of_wrong_shape_or_dtype(kind, message, tmp_path):
    path = script_and_save(BadOutput(kind), tmp_path / "bad.pt")
    integrator, context = make_context(path)
    with pytest.raises(openmm.OpenMMException, match=message):
        integrator.step(1)
    np.testing.assert_array_equal(positions_of(context), TETRAHEDRON)


def test_refuses_missing_garbage_and_non_conforming_files(tmp_path):
    # The plugin's own constructor: the Python face would stop at the metadata first.
    with pytest.raises(openmm.OpenMMException, match="cannot read"):
        timewarpplugin.TimewarpIntegrator(str(tmp_path / "missing.pt"), 300.0, [0])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(openmm.OpenMMException, match="not a TorchScript archive"):
        timewarpplugin.TimewarpIntegrator(str(garbage), 300.0, [0])
    path = script_and_save(NoTau(), tmp_path / "notau.pt")
    with pytest.raises(openmm.OpenMMException, match="'tau'"):
        TimewarpIntegrator(path, 300, atom_types=[0])
    with pytest.raises(ValueError, match="no proposal model"):
        TimewarpIntegrator(tmp_path / "missing.pt", 300, atom_types=[0])


def test_refuses_bad_parameters(walk_model):
    with pytest.raises(openmm.OpenMMException, match="temperature must be positive"):
        TimewarpIntegrator(walk_model, 0 * unit.kelvin, atom_types=[0])
    with pytest.raises(openmm.OpenMMException, match="maximum proposal batch must be at least 1"):
        TimewarpIntegrator(walk_model, 300, atom_types=[0], max_proposal_batch=0)
    with pytest.raises(openmm.OpenMMException, match="outside the model's vocabulary"):
        TimewarpIntegrator(walk_model, 300, atom_types=[0, 1])
    with pytest.raises(ValueError, match="quadruples"):
        TimewarpIntegrator(walk_model, 300, atom_types=[0] * 4, chiral_centres=[0, 1, 2])


def test_refuses_model_atom_count_mismatch(tmp_path):
    path = export_simple_proposal(GaussianRandomWalk(0.05), tmp_path / "five.pt", num_atoms=5)
    with pytest.raises(openmm.OpenMMException, match="supports 5 atoms"):
        TimewarpIntegrator(path, 300, atom_types=[0] * 4)


def _refused_context(walk_model, system, match, **options):
    integrator = TimewarpIntegrator(
        walk_model, 300, atom_types=[0] * options.pop("num_types", 4), **options
    )
    with pytest.raises(openmm.OpenMMException, match=match):
        openmm.Context(system, integrator, REFERENCE)


def test_refuses_systems_it_cannot_sample_exactly(walk_model):
    constrained = tethered_particles()
    constrained.addConstraint(0, 1, 0.1)
    _refused_context(walk_model, constrained, "constraints")
    virtual = tethered_particles()
    virtual.setParticleMass(3, 0.0)
    virtual.setVirtualSite(3, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    _refused_context(walk_model, virtual, "virtual sites")
    periodic = tethered_particles()
    nonbonded = openmm.NonbondedForce()
    nonbonded.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    for _ in range(4):
        nonbonded.addParticle(0.0, 0.3, 0.0)
    periodic.addForce(nonbonded)
    _refused_context(walk_model, periodic, "periodic")
    _refused_context(walk_model, tethered_particles(), "3 atom types", num_types=3)
    _refused_context(
        walk_model, tethered_particles(), "chiral-centre index 4", chiral_centres=[(0, 1, 2, 4)]
    )


def test_every_plugin_method_has_a_docstring():
    cls = timewarpplugin.TimewarpIntegrator
    undocumented = [
        name
        for name, member in vars(cls).items()
        if callable(member)
        and not name.startswith("_")
        and len((member.__doc__ or "").strip()) < 20
    ]
    assert undocumented == []


def test_a_chain_that_accepts_nothing_warns_once(tmp_path, walk_model):
    path = export_simple_proposal(NonFinite(), tmp_path / "nonfinite.pt")
    integrator, context = make_context(path, max_proposal_batch=64)
    with pytest.warns(StuckChainWarning, match="accepted none of its first 2000 proposals"):
        for _ in range(25):
            integrator.step(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        integrator.step(STUCK_AFTER_PROPOSALS)  # once is enough
        moving, moving_context = make_context(walk_model)
        moving.step(STUCK_AFTER_PROPOSALS)
    assert moving.getNumAccepted() > 0
    del context, moving_context
