"""Tests of the Timewarp flow: exact inverse and densities, symmetries, the MH ratio, export.

The checks are written as functions returning an error measure, so the same check runs on the
correct model (small error) and on deliberately broken ones (large error): a check that cannot fail
would prove nothing.
"""

from __future__ import annotations

import math

import numpy as np
import openmm
import pytest
import torch
from helpers import SignFlipped
from openmm import unit

from openmm_timewarp.models import contract
from openmm_timewarp.proposals.cartesian import (
    PRESETS,
    FlowConfig,
    TimewarpProposal,
    count_parameters,
    preset,
)
from openmm_timewarp.proposals.cartesian import coupling as coupling_module
from openmm_timewarp.proposals.cartesian import flow as flow_module
from openmm_timewarp.proposals.cartesian.coupling import centre

torch.set_num_threads(1)

NUM_ATOMS = 5
NUM_ATOM_TYPES = 4


def make_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> TimewarpProposal:
    """A small flow with every parameter perturbed away from the identity initialisation."""
    torch.manual_seed(seed)
    config = FlowConfig(
        num_atom_types=NUM_ATOM_TYPES,
        num_couplings=2,
        num_layers=1,
        width=16,
        feedforward=32,
        head_dim=4,
        atom_embedding_dim=8,
    )
    model = TimewarpProposal(config).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model.eval()


def make_inputs(
    batch: int = 3, dtype: torch.dtype = torch.float64, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    positions = 0.3 * torch.randn(NUM_ATOMS, 3, generator=generator, dtype=dtype) + 1.5
    atom_types = torch.tensor([0, 1, 2, 3, 1])
    noise = torch.randn(batch, NUM_ATOMS, 9, generator=generator, dtype=dtype)
    return positions, atom_types, noise


def centred_basis(num_atoms: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal basis ``[N, N-1]`` of the vectors of R^N that sum to zero."""
    ones_and_identity = torch.cat(
        [torch.ones(num_atoms, 1, dtype=dtype), torch.eye(num_atoms, dtype=dtype)[:, :-1]], dim=1
    )
    return torch.linalg.qr(ones_and_identity)[0][:, 1:]


def standard_normal_log_prob_in_basis(centred: torch.Tensor) -> torch.Tensor:
    """``log N(0, I)`` of a centred ``[N, 3]`` configuration, in orthonormal coordinates."""
    coordinates = centred_basis(centred.shape[0], centred.dtype).T @ centred
    return torch.distributions.Normal(0.0, 1.0).log_prob(coordinates).sum()


# ---- the checks -----------------------------------------------------------------------------


def round_trip_error(model: TimewarpProposal, dtype: torch.dtype) -> float:
    """Largest relative error of latent -> data -> latent, over the batch."""
    positions, atom_types, noise = make_inputs(batch=4, dtype=dtype)
    conditioning = centre(positions).unsqueeze(0)
    latents = (centre(noise[..., 3:6]), centre(noise[..., 6:9]))
    displacement, auxiliary, forward_log_prob = model.latent_to_data(
        *latents, conditioning, atom_types[None]
    )
    recovered = model.data_to_latent(displacement, auxiliary, conditioning, atom_types[None])
    errors = [((recovered[i] - latents[i]).norm() / latents[i].norm()).item() for i in range(2)]
    errors.append(((recovered[2] - forward_log_prob).abs() / forward_log_prob.abs()).max().item())
    return max(errors)


def log_det_error(model: TimewarpProposal) -> float:
    """|model's log-det - autograd Jacobian's log|det||, both directions, on the centred space."""
    positions, atom_types, noise = make_inputs(batch=1)
    conditioning = centre(positions).unsqueeze(0)
    basis = centred_basis(NUM_ATOMS)

    def in_coordinates(map_halves):
        def mapped(coordinates: torch.Tensor) -> torch.Tensor:
            first, second = (basis @ half for half in coordinates.view(2, NUM_ATOMS - 1, 3))
            out_first, out_second, _ = map_halves(first[None], second[None])
            return torch.cat([basis.T @ out_first[0], basis.T @ out_second[0]]).flatten()

        return mapped

    def forward_map(first, second):
        return model.latent_to_data(first, second, conditioning, atom_types[None])

    def inverse_map(first, second):
        return model.data_to_latent(first, second, conditioning, atom_types[None])

    latents = (centre(noise[..., 3:6]), centre(noise[..., 6:9]))
    displacement, auxiliary, log_prob = forward_map(*latents)
    base_log_prob = sum(standard_normal_log_prob_in_basis(latent[0]) for latent in latents)
    errors = []
    for map_halves, point, model_log_det in (
        (forward_map, latents, base_log_prob - log_prob[0]),
        (inverse_map, (displacement, auxiliary), log_prob[0] - base_log_prob),
    ):
        coordinates = torch.cat([basis.T @ point[0][0], basis.T @ point[1][0]]).flatten()
        jacobian = torch.autograd.functional.jacobian(in_coordinates(map_halves), coordinates)
        errors.append(abs(torch.linalg.slogdet(jacobian)[1].item() - model_log_det.item()))
    return max(errors)


def brute_force_log_q_ratio_error(model: TimewarpProposal) -> float:
    """Largest |model logQRatio - independent evaluation| over a batch of proposals.

    The independent evaluation uses only the points of the flow's generative map, one proposal at a
    time: densities from its autograd Jacobian (change of variables) and from torch.distributions
    in orthonormal coordinates of the centred space; the reverse latent comes from the model's
    inverse, checked by mapping it forward again.
    """
    positions, atom_types, noise = make_inputs(batch=3)
    proposals, log_q_ratio = model(positions, atom_types, noise)
    basis = centred_basis(NUM_ATOMS)

    def generative_map(conditioning: torch.Tensor):
        def mapped(coordinates: torch.Tensor) -> torch.Tensor:
            first, second = (basis @ half for half in coordinates.view(2, NUM_ATOMS - 1, 3))
            displacement, auxiliary, _ = model.latent_to_data(
                first[None], second[None], centre(conditioning)[None], atom_types[None]
            )
            return torch.cat([basis.T @ displacement[0], basis.T @ auxiliary[0]]).flatten()

        return mapped

    def log_density(conditioning: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        jacobian = torch.autograd.functional.jacobian(generative_map(conditioning), latents)
        base = torch.distributions.Normal(0.0, 1.0).log_prob(latents).sum()
        return base - torch.linalg.slogdet(jacobian)[1]

    errors = []
    for index in range(noise.shape[0]):
        auxiliary = centre(noise[index, :, 0:3])
        latents = torch.cat(
            [basis.T @ centre(noise[index, :, 3:6]), basis.T @ centre(noise[index, :, 6:9])]
        ).flatten()
        image = generative_map(positions)(latents)
        next_auxiliary = basis @ image.view(2, NUM_ATOMS - 1, 3)[1]
        next_positions = positions + basis @ image.view(2, NUM_ATOMS - 1, 3)[0]
        errors.append((next_positions - proposals[index]).abs().max().item())

        reverse_latents = model.data_to_latent(
            (positions - next_positions)[None],
            auxiliary[None],
            centre(next_positions)[None],
            atom_types[None],
        )
        reverse_coordinates = torch.cat(
            [basis.T @ reverse_latents[0][0], basis.T @ reverse_latents[1][0]]
        ).flatten()
        target = torch.cat([basis.T @ (positions - next_positions), basis.T @ auxiliary]).flatten()
        errors.append(
            (generative_map(next_positions)(reverse_coordinates) - target).abs().max().item()
        )

        expected = (
            log_density(next_positions, reverse_coordinates)
            + standard_normal_log_prob_in_basis(next_auxiliary)
            - log_density(positions, latents)
            - standard_normal_log_prob_in_basis(auxiliary)
        )
        errors.append(abs(expected.item() - log_q_ratio[index].item()))
    return max(float(error) for error in errors)


def permutation_error(model: TimewarpProposal) -> float:
    positions, atom_types, noise = make_inputs()
    permutation = torch.tensor([3, 0, 4, 1, 2])
    proposals, log_q_ratio = model(positions, atom_types, noise)
    permuted_proposals, permuted_log_q_ratio = model(
        positions[permutation], atom_types[permutation], noise[:, permutation]
    )
    return max(
        (permuted_proposals - proposals[:, permutation]).abs().max().item(),
        (permuted_log_q_ratio - log_q_ratio).abs().max().item(),
    )


def translation_error(model: TimewarpProposal) -> float:
    positions, atom_types, noise = make_inputs()
    shift = torch.tensor([0.7, -1.3, 2.1], dtype=positions.dtype)
    proposals, log_q_ratio = model(positions, atom_types, noise)
    shifted_proposals, shifted_log_q_ratio = model(positions + shift, atom_types, noise)
    return max(
        (shifted_proposals - shift - proposals).abs().max().item(),
        (shifted_log_q_ratio - log_q_ratio).abs().max().item(),
    )


# ---- the correct model passes -----------------------------------------------------------------


def test_round_trip_float64():
    assert round_trip_error(make_model(torch.float64), torch.float64) < 1e-10


def test_round_trip_float32():
    assert round_trip_error(make_model(torch.float32), torch.float32) < 1e-5


def test_log_det_matches_autograd_jacobian():
    assert log_det_error(make_model()) < 1e-8


def test_log_q_ratio_matches_brute_force_evaluation():
    assert brute_force_log_q_ratio_error(make_model()) < 1e-8


def test_permutation_equivariance():
    assert permutation_error(make_model()) < 1e-10


def test_translation_equivariance_keeps_the_centre():
    model = make_model()
    assert translation_error(model) < 1e-10
    positions, atom_types, noise = make_inputs()
    proposals, _ = model(positions, atom_types, noise)
    assert torch.allclose(proposals.mean(1), positions.mean(0).expand(3, 3), atol=1e-12)


def test_untrained_flow_is_a_symmetric_random_walk():
    """Fresh couplings are the identity, so the proposal is symmetric and logQRatio is 0."""
    model = TimewarpProposal(FlowConfig(num_atom_types=NUM_ATOM_TYPES)).double()
    positions, atom_types, noise = make_inputs()
    proposals, log_q_ratio = model(positions, atom_types, noise)
    assert torch.allclose(log_q_ratio, torch.zeros(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(proposals - positions, centre(noise[..., 3:6]), atol=1e-12)


def test_proposals_are_reproducible_and_batch_independent():
    model = make_model()
    positions, atom_types, noise = make_inputs(batch=4)
    proposals, log_q_ratio = model(positions, atom_types, noise)
    single_proposal, single_ratio = model(positions, atom_types, noise[2:3])
    assert torch.allclose(single_proposal[0], proposals[2], atol=1e-12)
    assert torch.allclose(single_ratio[0], log_q_ratio[2], atol=1e-10)
    assert torch.equal(model(positions, atom_types, noise)[0], proposals)


# ---- broken models fail the same checks -------------------------------------------------------


def test_dropped_log_det_term_is_caught(monkeypatch):
    model = make_model()
    monkeypatch.setattr(
        coupling_module, "_centred_log_det", lambda log_scale: log_scale.sum((-2, -1))
    )
    assert log_det_error(model) > 1e-3
    assert brute_force_log_q_ratio_error(model) > 1e-3


def test_wrong_sign_in_inverse_is_caught(monkeypatch):
    model = make_model()
    correct_inverse = coupling_module.centred_affine_inverse
    monkeypatch.setattr(
        coupling_module,
        "centred_affine_inverse",
        lambda y, shift, log_scale: correct_inverse(y, -shift, log_scale),
    )
    assert round_trip_error(model, torch.float64) > 1e-3
    assert brute_force_log_q_ratio_error(model) > 1e-3


def test_attention_that_sees_atom_order_is_caught(monkeypatch):
    model = make_model()
    correct_weights = flow_module.kernel_attention_weights

    def order_dependent_weights(positions, inverse_squared_length_scales):
        weights = correct_weights(positions, inverse_squared_length_scales)
        order = torch.arange(positions.shape[-2], dtype=weights.dtype)
        return torch.softmax(weights.log() + 0.5 * order, dim=-1)

    monkeypatch.setattr(flow_module, "kernel_attention_weights", order_dependent_weights)
    assert permutation_error(model) > 1e-3
    assert translation_error(model) < 1e-10  # still translation equivariant: the check is specific


def test_uncentred_conditioning_is_caught(monkeypatch):
    model = make_model()
    monkeypatch.setattr(flow_module, "centre", lambda coordinates: coordinates)
    assert translation_error(model) > 1e-3


# ---- interface ----------------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors():
    model = make_model()
    positions, atom_types, noise = make_inputs()
    with pytest.raises(ValueError, match="atom type codes"):
        model(positions, torch.tensor([0, 1, 2, 3, NUM_ATOM_TYPES]), noise)
    with pytest.raises(ValueError, match="one type code per atom"):
        model(positions, atom_types[:4], noise)
    with pytest.raises(ValueError, match="noise must have shape"):
        model(positions, atom_types, noise[..., :6])
    with pytest.raises(ValueError, match="positions must have shape"):
        model(positions[:, :2], atom_types, noise)
    with pytest.raises(ValueError, match="unknown flow preset"):
        preset("huge", NUM_ATOM_TYPES)


def test_presets_have_the_published_sizes():
    counts = {}
    for name in PRESETS:
        with torch.device("meta"):
            counts[name] = count_parameters(TimewarpProposal(preset(name, 10)))
    assert counts["cpu-small"] < 1_000_000
    assert math.isclose(counts["paper-ad"], 36e6, rel_tol=0.05)
    assert math.isclose(counts["paper-2aa"], 106e6, rel_tol=0.05)


def test_checkpoint_round_trip_restores_the_model():
    """A state dict loaded into a fresh model (the inverse-order view included) reproduces it."""
    model = make_model()
    restored = TimewarpProposal(model.config).double()
    restored.load_state_dict(model.state_dict())
    positions, atom_types, noise = make_inputs()
    expected = model(positions, atom_types, noise)
    actual = restored(positions, atom_types, noise)
    assert torch.equal(expected[0], actual[0]) and torch.equal(expected[1], actual[1])
    assert restored.layers_in_inverse_order[0] is restored.layers[-1]


def test_training_lowers_the_negative_log_likelihood():
    """A few Adam steps on pairs with a fixed, atom-dependent displacement lower the NLL."""
    torch.manual_seed(0)
    model = TimewarpProposal(FlowConfig(num_atom_types=NUM_ATOM_TYPES, width=32, feedforward=64))
    positions, atom_types, _ = make_inputs(dtype=torch.float32)
    x_cond = positions + 0.05 * torch.randn(64, NUM_ATOMS, 3)
    x_next = (
        x_cond + 0.1 * torch.randn(64, NUM_ATOMS, 3) * torch.linspace(0.2, 1.0, NUM_ATOMS)[:, None]
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.training_nll(x_cond, x_next, atom_types).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 10.0


def test_exported_file_matches_eager_model(tmp_path):
    model = make_model(torch.float32)
    metadata = contract.ModelMetadata(
        name="test-flow",
        family="timewarp-flow",
        tau_ps=500.0,
        temperature_K=310.0,
        forcefield="none (test)",
        atom_type_scheme="element",
        atom_types=["C", "H", "N", "O"],
    )
    positions, atom_types, noise = make_inputs(batch=6, dtype=torch.float32)
    path = contract.export(model, tmp_path / "flow.pt", metadata, example_positions=positions)
    loaded, loaded_metadata = contract.load_model(path)
    assert loaded.noise_dim == 9 and loaded_metadata.family == "timewarp-flow"
    with torch.no_grad():
        expected = model(positions, atom_types, noise)
        actual = loaded(positions, atom_types, noise)
    assert actual[0].dtype == torch.float32 and actual[1].dtype == torch.float32
    assert torch.allclose(actual[0], expected[0], atol=1e-6)
    assert torch.allclose(actual[1], expected[1], atol=1e-4)


# ---- through the C++ integrator -----------------------------------------------------------------

BOND_STD_NM = 0.05  # per coordinate, of each bond vector of the chain below


def bonded_chain_system(kt: float, num_particles: int = 3) -> openmm.System:
    """Particles joined by zero-length harmonic bonds: translation invariant, and each bond vector
    is an independent Gaussian with variance ``BOND_STD_NM**2`` per coordinate."""
    system = openmm.System()
    bonds = openmm.HarmonicBondForce()
    for index in range(num_particles):
        system.addParticle(12.0)
        if index:
            bonds.addBond(index - 1, index, 0.0, kt / BOND_STD_NM**2)
    system.addForce(bonds)
    return system


def export_chain_flow(path, num_particles: int = 3, flip_log_q_ratio: bool = False) -> str:
    """A flow proposing moves of about the bonds' size, perturbed so that logQRatio is not 0."""
    torch.manual_seed(3)
    model = TimewarpProposal(
        FlowConfig(num_atom_types=1, num_couplings=2, width=16, feedforward=32, head_dim=4)
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        for layer in model.layers:  # small shifts and log-scales: a mildly asymmetric proposal
            for coupling in (layer.position_coupling, layer.auxiliary_coupling):
                coupling.conditioner.output_mlp[-1].weight.mul_(0.1)
                coupling.conditioner.output_mlp[-1].bias.mul_(0.1)
        model.base_log_scale[:, 0] = math.log(0.5 * BOND_STD_NM)
    metadata = contract.ModelMetadata(
        name="chain",
        family="timewarp-flow",
        tau_ps=1.0,
        temperature_K=300.0,
        forcefield="harmonic chain (test)",
        atom_type_scheme="element",
        atom_types=["X"],
        num_atoms=num_particles,
    )
    return str(contract.export(SignFlipped(model) if flip_log_q_ratio else model, path, metadata))


def run_chain(model_path: str, steps: int, seed: int = 11) -> tuple:
    integrator_module = pytest.importorskip("openmm_timewarp.integrator")
    kt = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    integrator = integrator_module.TimewarpIntegrator(
        model_path, 300 * unit.kelvin, atom_types=[0, 0, 0], chiral_centres=[], seed=seed
    )
    context = openmm.Context(
        bonded_chain_system(kt), integrator, openmm.Platform.getPlatformByName("Reference")
    )
    start = np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.05, 0.05, 0.0]])
    context.setPositions(start)
    samples = []
    for _ in range(steps):
        integrator.step(1)
        samples.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    return integrator, start, np.array(samples)


def test_integrator_runs_the_exported_flow(tmp_path):
    integrator, start, samples = run_chain(export_chain_flow(tmp_path / "chain.pt"), steps=200)
    assert integrator.getNumProposed() == 200
    assert 0.1 < integrator.getAcceptanceRate() < 1.0
    assert integrator.getNumRejectedNonFinite() == 0
    # The flow keeps the centre of geometry: only internal coordinates move.
    assert np.allclose(samples.mean(axis=1), start.mean(axis=0), atol=1e-5)


def bond_length_z_score(model_path: str, steps: int = 6000) -> tuple[float, float]:
    """(<|r|^2> / (3 sigma^2) - 1) in batch-means standard errors, and that standard error."""
    _, _, samples = run_chain(model_path, steps=steps)
    bond_vectors = np.diff(samples[500:], axis=1)
    squared_lengths = (bond_vectors**2).sum(-1).mean(-1) / (3 * BOND_STD_NM**2)
    batches = squared_lengths[: len(squared_lengths) // 20 * 20].reshape(20, -1).mean(axis=1)
    standard_error = batches.std(ddof=1) / math.sqrt(len(batches))
    return (squared_lengths.mean() - 1.0) / standard_error, standard_error


@pytest.mark.slow
def test_integrator_with_the_flow_samples_the_bond_distribution(tmp_path):
    """<|r|^2> of each bond vector is exactly 3 sigma^2: the chain must agree within 4 standard
    errors, and the same flow with its logQRatio negated must not."""
    z_score, standard_error = bond_length_z_score(export_chain_flow(tmp_path / "chain.pt"))
    assert abs(z_score) < 4 and standard_error < 0.05
    flipped_path = export_chain_flow(tmp_path / "flipped.pt", flip_log_q_ratio=True)
    assert abs(bond_length_z_score(flipped_path)[0]) > 4


@pytest.mark.slow
def test_alanine_dipeptide_flow_runs_in_the_integrator(tmp_path):
    """A cpu-small flow on alanine dipeptide, atom types from the Topology: proposals of 0.5 pm
    per coordinate (the untrained flow is a random walk) are accepted about half the time."""
    peptides = pytest.importorskip("openmm_timewarp.data.peptides")
    integrator_module = pytest.importorskip("openmm_timewarp.integrator")
    modeller = peptides.build_peptide("A")
    vocabulary = ["C", "H", "N", "O"]
    torch.manual_seed(0)
    model = TimewarpProposal(preset("cpu-small", len(vocabulary)))
    with torch.no_grad():
        model.base_log_scale[:, 0] = math.log(0.0005)
    metadata = contract.ModelMetadata(
        name="alanine-dipeptide-untrained",
        family="timewarp-flow",
        tau_ps=500.0,
        temperature_K=310.0,
        forcefield="amber14-all + OBC2 (GBSAOBCForce)",
        atom_type_scheme="element",
        atom_types=vocabulary,
        num_atoms=22,
    )
    path = contract.export(model, tmp_path / "flow.pt", metadata)
    integrator = integrator_module.TimewarpIntegrator(
        str(path), 310 * unit.kelvin, topology=modeller.topology, seed=3
    )
    context = openmm.Context(
        peptides.create_system(modeller.topology),
        integrator,
        openmm.Platform.getPlatformByName("Reference"),
    )
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    integrator.step(200)
    assert 0.2 < integrator.getAcceptanceRate() < 0.9
    assert integrator.getNumRejectedNonFinite() == 0
    assert integrator.getNumRejectedChirality() == 0


def test_relabelling_equivalent_atoms_permutes_the_proposals():
    """Atoms with one type code (a methyl's hydrogens) swapped in the input: the proposals come
    with the same swap and the same logQRatio, so the flow needs no canonical labelling."""
    model = make_model()
    positions, atom_types, noise = make_inputs()
    swap = torch.tensor([0, 4, 2, 3, 1])  # atoms 1 and 4 share type 1
    assert torch.equal(atom_types[swap], atom_types)
    proposals, log_q_ratio = model(positions, atom_types, noise)
    swapped, swapped_log_q_ratio = model(positions[swap], atom_types, noise[:, swap])
    assert (swapped - proposals[:, swap]).abs().max().item() < 1e-10
    assert (swapped_log_q_ratio - log_q_ratio).abs().max().item() < 1e-10
