"""Energy fine-tune: the OpenMM autograd potential, both objectives, resume and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from openmm_timewarp.checkpoints import load_checkpoint
from openmm_timewarp.data.energy import ReducedPotential, thermal_energy
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.proposals.ic.families import ICIndependentProposal, proposal_for_frames
from openmm_timewarp.training.finetune import (
    FineTuneSettings,
    fine_tune,
    lin_log_cut,
    log_acceptance,
    masked_mean,
    reverse_kl,
)
from openmm_timewarp.training.likelihood import TrainingSettings, train
from openmm_timewarp.training.pipeline import fine_tune_folder

TEMPERATURE_K = 310.0


@pytest.fixture(scope="module")
def molecule():
    """Alanine dipeptide: topology, System, and 200 frames jittered around a minimised structure."""
    modeller = build_peptide("A")
    system = create_system(modeller.topology)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    x0 = (
        context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    )
    rng = np.random.default_rng(0)
    frames = x0[None] + 0.003 * rng.standard_normal((200, *x0.shape))
    return modeller.topology, system, torch.tensor(frames, dtype=torch.float32)


@pytest.fixture(scope="module")
def potential(molecule) -> ReducedPotential:
    return ReducedPotential(molecule[1], TEMPERATURE_K)


@pytest.fixture(scope="module")
def pretrained(molecule, tmp_path_factory) -> dict[str, torch.Tensor]:
    """A tiny ic-independent model after 100 maximum-likelihood steps on the frames."""
    topology, _, frames = molecule
    model = tiny_model(topology, frames)
    settings = TrainingSettings(
        max_steps=100, batch_size=64, learning_rate=1e-2, warmup_steps=0, patience=100
    )
    pairs, validation = (frames[:150], frames[:150]), (frames[150:], frames[150:])
    output = tmp_path_factory.mktemp("maximum-likelihood")
    train(model, pairs, validation, types(), output, settings, progress=False)
    return model.state_dict()


def context_energy_and_forces(system: openmm.System, x: np.ndarray) -> tuple[float, np.ndarray]:
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(x)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, forces


def test_energies_and_gradients_match_the_context(molecule, potential):
    _, system, frames = molecule
    x = frames[:3].double().requires_grad_(True)
    u = potential(x)
    weights = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    (u * weights).sum().backward()
    kT = thermal_energy(TEMPERATURE_K)
    assert kT == pytest.approx(2.5775, abs=1e-4)  # R T at 310 K in kJ/mol
    for index in range(3):
        energy, forces = context_energy_and_forces(system, x[index].detach().numpy())
        assert float(u[index].detach()) == pytest.approx(energy / kT, rel=1e-12)
        expected = weights[index] * torch.from_numpy(-forces / kT)
        torch.testing.assert_close(x.grad[index], expected, rtol=1e-12, atol=1e-12)


def test_cpu_platform_agrees_with_reference(molecule, potential):
    x = molecule[2][:3].double()
    cpu = ReducedPotential(molecule[1], TEMPERATURE_K, platform="CPU")
    energies, gradients = cpu.evaluate(x.numpy())
    expected_energies, expected_gradients = potential.evaluate(x.numpy())
    np.testing.assert_allclose(energies, expected_energies, atol=1e-3)  # kT; CPU is mixed precision
    scale = np.abs(expected_gradients).max()
    np.testing.assert_allclose(gradients, expected_gradients, atol=1e-5 * scale)


def test_gradient_equals_finite_differences_of_the_energy(molecule, potential):
    x = molecule[2][5].double().clone().requires_grad_(True)
    potential(x[None]).sum().backward()
    rng = np.random.default_rng(1)
    step = 1e-6
    for atom, axis in zip(rng.integers(0, x.shape[0], 8), rng.integers(0, 3, 8), strict=True):
        shifted = x.detach().clone().numpy()[None].repeat(2, 0)
        shifted[0, atom, axis] += step
        shifted[1, atom, axis] -= step
        energies, _ = potential.evaluate(shifted)
        difference = (energies[0] - energies[1]) / (2 * step)
        assert float(x.grad[atom, axis]) == pytest.approx(difference, rel=1e-5, abs=1e-3)


def test_nonfinite_configurations_are_masked_and_counted(molecule):
    _, system, frames = molecule
    potential = ReducedPotential(system, TEMPERATURE_K)
    x = frames[:4].double().clone()
    x[1, 3, 0] = float("nan")
    x[2, 1] = x[2, 0]  # two atoms on the same spot: infinite Coulomb energy
    x.requires_grad_(True)
    u = potential(x)
    finite = torch.isfinite(u)
    assert finite.tolist() == [True, False, False, True]
    assert potential.num_nonfinite == 2 and potential.num_evaluations == 4
    masked_mean(u).backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[1:3] == 0).all() and (x.grad[[0, 3]].abs().sum((1, 2)) > 0).all()


def test_bad_input_gives_clear_errors(molecule, potential, tmp_path):
    topology, system, frames = molecule
    with pytest.raises(ValueError, match=r"shape \[B, 22, 3\]"):
        potential(frames[:2, :20])
    with pytest.raises(ValueError, match="platform must be one of"):
        ReducedPotential(system, TEMPERATURE_K, platform="CUDA")
    small = openmm.System()
    small.addParticle(1.0)
    model = tiny_model(topology, frames)
    pairs = (frames, frames)
    with pytest.raises(ValueError, match="System has 1 particles but the data have 22 atoms"):
        fine_tune(model, ReducedPotential(small, TEMPERATURE_K), pairs, pairs, types(), tmp_path)
    with pytest.raises(ValueError, match="is not a `timewarp train` folder"):
        fine_tune_folder(tmp_path / "missing", FineTuneSettings())
    with pytest.raises(ValueError, match="weight must lie in"):
        FineTuneSettings(weight=1.5)
    with pytest.raises(ValueError, match="objective must be one of"):
        FineTuneSettings(objective="forward-kl")
    conditional = proposal_for_frames("ic-conditional", topology, frames, num_couplings=2)
    with pytest.raises(ValueError, match="reverse-kl objective is for ic-independent"):
        settings = FineTuneSettings(objective="reverse-kl")
        fine_tune(conditional, potential, pairs, pairs, types(), tmp_path, settings)


def test_lin_log_cut_is_continuous_with_a_bounded_slope():
    values = torch.tensor([-3.0, 0.0, 20.0, 21.0, 1e6], requires_grad=True)
    cut = lin_log_cut(values, 20.0)
    cut.sum().backward()
    expected = [-3.0, 0.0, 20.0, 20.0 + np.log(2.0), 20.0 + np.log1p(1e6 - 20.0)]
    assert cut.tolist() == pytest.approx(expected, rel=1e-6)
    assert values.grad.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5, 1 / (1e6 - 19)], rel=1e-4)


def tiny_model(topology, frames) -> ICIndependentProposal:
    torch.manual_seed(0)  # the layers' initial weights come from torch's generator
    return proposal_for_frames(
        "ic-independent", topology, frames, num_couplings=2, hidden=16, num_bins=4, seed=0
    )


def types() -> torch.Tensor:
    return torch.arange(22)


# The tiny model's proposals start hundreds of kT above their starts; beyond the cut the
# objective's slope is 1 / excess, so with the default cut (20) a 20-step fine-tune moves it
# by less than the steps' noise (it rose in one environment). A cut above the excess keeps the
# objective the same function with a slope the test can see.
ENERGY_CUT = 200.0


def fixed_objective(model, potential, frames, objective: str) -> float:
    """The objective on fixed frames and noise (what the fine-tune lowers), without gradients."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        if objective == "acceptance":
            starts = frames[:8]
            noise = torch.randn(8, 8, 22, model.noise_dim, generator=generator)
            log_alpha = log_acceptance(model, potential, starts, potential(starts), types(), noise)
            return float(masked_mean(lin_log_cut(-log_alpha, ENERGY_CUT)))
        noise = torch.randn(64, model.num_internal, generator=generator)
        reference = float(potential(frames[:8]).mean())
        terms = reverse_kl(model, potential, frames[:64], types(), noise, reference, ENERGY_CUT)
        return float(masked_mean(terms))


FAST = dict(
    energy_cut=ENERGY_CUT,
    batch_size=16,
    num_starts=4,
    proposals_per_start=4,
    validation_starts=8,
    warmup_steps=0,
)


@pytest.mark.parametrize("objective", ["acceptance", "reverse-kl"])
def test_short_fine_tune_lowers_its_objective(molecule, potential, pretrained, tmp_path, objective):
    topology, _, frames = molecule
    model = tiny_model(topology, frames)
    model.load_state_dict(pretrained)
    before = fixed_objective(model, potential, frames, objective)
    settings = FineTuneSettings(
        steps=20,
        objective=objective,
        weight=1.0,
        learning_rate=3e-3,
        validate_every=4,
        checkpoint_every=4,
        **FAST,
    )
    pairs = (frames[:150], frames[:150])
    validation = (frames[150:], frames[150:])
    result = fine_tune(
        model, potential, pairs, validation, types(), tmp_path, settings, progress=False
    )
    # The model holds its best-validation-acceptance parameters; compare the last ones too.
    last = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    model.load_state_dict(last)
    after = fixed_objective(model, potential, frames, objective)
    assert after < before - 0.5, (before, after)
    assert result.steps == 20 and result.skipped_steps == 0
    with (tmp_path / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["0", "4", "8", "12", "16", "20"]
    assert all(float(row["validation_acceptance"]) >= 0 for row in rows)
    assert rows[0]["objective"] == "" and all(np.isfinite(float(r["objective"])) for r in rows[1:])


def test_resume_is_bit_identical(molecule, potential, tmp_path, monkeypatch):
    topology, _, frames = molecule
    settings = FineTuneSettings(steps=4, validate_every=2, checkpoint_every=2, **FAST)
    pairs, validation = (frames[:150], frames[:150]), (frames[150:], frames[150:])

    def run(output: Path) -> None:
        model = tiny_model(topology, frames)
        fine_tune(model, potential, pairs, validation, types(), output, settings, progress=False)

    run(tmp_path / "straight")
    training_nll = ICIndependentProposal.training_nll
    calls = []

    def interrupted_at_step_three(self, x_cond, x_next, atom_types):
        if self.training:
            calls.append(1)
            if len(calls) == 3:  # after the checkpoint of step 2
                raise KeyboardInterrupt("simulated interruption")
        return training_nll(self, x_cond, x_next, atom_types)

    monkeypatch.setattr(ICIndependentProposal, "training_nll", interrupted_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed")
    monkeypatch.setattr(ICIndependentProposal, "training_nll", training_nll)
    run(tmp_path / "resumed")

    def curves(folder: Path) -> list[dict[str, str]]:
        with (folder / "log.csv").open() as handle:
            return [
                {k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)
            ]

    assert curves(tmp_path / "straight") == curves(tmp_path / "resumed")
    assert len(curves(tmp_path / "straight")) == 3
    states = [
        load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]
        for name in ("straight", "resumed")
    ]
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    changed = FineTuneSettings(steps=6, validate_every=2, checkpoint_every=2, **FAST)
    with pytest.raises(ValueError, match="other settings"):
        model = tiny_model(topology, frames)
        fine_tune(model, potential, pairs, validation, types(), tmp_path / "straight", changed)
