"""Maximum-likelihood training: convergence, early stopping, checkpoints and exact resume."""

import csv
import math

import numpy as np
import pytest
import torch
from openmm import unit

from openmm_timewarp.internal.proposals import proposal_for_frames
from openmm_timewarp.peptides import build_peptide
from openmm_timewarp.training import TrainingSettings, train

torch.set_num_threads(1)


class GaussianDisplacement(torch.nn.Module):
    """x_next ~ N(x_cond + shift, scale^2) per coordinate, with a learnable shift and scale."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(3))
        self.log_scale = torch.nn.Parameter(torch.zeros(()))
        self.calls = 0
        self.fail_at_call: int | None = None

    def training_nll(self, x_cond, x_next, atom_types):
        self.calls += 1
        if self.fail_at_call is not None and self.calls == self.fail_at_call:
            raise KeyboardInterrupt("simulated interruption")
        z = (x_next - x_cond - self.shift) * torch.exp(-self.log_scale)
        nll = 0.5 * z**2 + self.log_scale + 0.5 * math.log(2 * math.pi)
        return nll.sum(dim=(1, 2))


def gaussian_pairs(count: int, shift: float, scale: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    x_cond = torch.randn(count, 2, 3, generator=generator)
    x_next = x_cond + shift + scale * torch.randn(count, 2, 3, generator=generator)
    return x_cond, x_next


SETTINGS = TrainingSettings(
    max_steps=300,
    batch_size=64,
    learning_rate=0.05,
    warmup_steps=20,
    validate_every=20,
    patience=100,
    checkpoint_every=40,
)
ATOM_TYPES = torch.zeros(2, dtype=torch.int64)


def test_fits_a_gaussian_and_logs_curves(tmp_path):
    model = GaussianDisplacement()
    result = train(
        model,
        gaussian_pairs(4000, 0.3, 0.5, seed=0),
        gaussian_pairs(1000, 0.3, 0.5, seed=1),
        ATOM_TYPES,
        tmp_path,
        SETTINGS,
        progress=False,
    )
    assert result.steps == 300 and not result.stopped_early
    # Maximum likelihood of 4000 x 6 samples: shift within a few standard errors of 0.3.
    assert torch.allclose(model.shift.detach(), torch.full((3,), 0.3), atol=0.03)
    assert math.exp(model.log_scale.item()) == pytest.approx(0.5, rel=0.05)
    expected_nll = 6 * (0.5 + math.log(0.5) + 0.5 * math.log(2 * math.pi))
    assert result.best_validation_nll == pytest.approx(expected_nll, abs=0.1)
    with result.log_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(20, 301, 20))
    assert float(rows[-1]["validation_nll"]) < float(rows[0]["validation_nll"])
    assert result.best_model_path.exists()


def test_early_stopping_keeps_the_best_model(tmp_path):
    model = GaussianDisplacement()
    # Validation pairs come from another shift: the fit first approaches them, then moves away.
    settings = TrainingSettings(**{**SETTINGS.__dict__, "patience": 3, "learning_rate": 0.01})
    result = train(
        model,
        gaussian_pairs(4000, 0.5, 0.2, seed=0),
        gaussian_pairs(1000, 0.1, 0.2, seed=1),
        ATOM_TYPES,
        tmp_path,
        settings,
        progress=False,
    )
    assert result.stopped_early and result.steps < settings.max_steps
    assert result.steps == result.best_step + settings.patience * settings.validate_every
    best = torch.load(result.best_model_path)
    assert torch.equal(best["shift"], model.shift.detach())


def test_resume_after_interruption_is_exact(tmp_path):
    data = gaussian_pairs(4000, 0.3, 0.5, seed=0), gaussian_pairs(500, 0.3, 0.5, seed=1)
    reference = GaussianDisplacement()
    train(reference, *data, ATOM_TYPES, tmp_path / "straight", SETTINGS, progress=False)

    interrupted = GaussianDisplacement()
    interrupted.fail_at_call = 150  # between the checkpoints at steps 120 and 160
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, *data, ATOM_TYPES, tmp_path / "resumed", SETTINGS, progress=False)
    resumed = GaussianDisplacement()
    result = train(resumed, *data, ATOM_TYPES, tmp_path / "resumed", SETTINGS, progress=False)
    assert result.steps == SETTINGS.max_steps
    assert torch.equal(resumed.shift, reference.shift)
    assert torch.equal(resumed.log_scale, reference.log_scale)
    logs = [
        (tmp_path / name / "log.csv").read_text().splitlines() for name in ("straight", "resumed")
    ]
    columns = [[line.split(",")[:3] for line in log] for log in logs]  # step, train, validation
    assert columns[0] == columns[1]


def test_changed_settings_are_refused_on_resume(tmp_path):
    data = gaussian_pairs(500, 0.3, 0.5, seed=0), gaussian_pairs(100, 0.3, 0.5, seed=1)
    settings = TrainingSettings(max_steps=40, validate_every=20, checkpoint_every=20)
    train(GaussianDisplacement(), *data, ATOM_TYPES, tmp_path, settings, progress=False)
    other = TrainingSettings(max_steps=40, validate_every=20, checkpoint_every=20, seed=1)
    with pytest.raises(ValueError, match="other settings"):
        train(GaussianDisplacement(), *data, ATOM_TYPES, tmp_path, other, progress=False)


def test_bad_input_is_refused(tmp_path):
    x = torch.zeros(10, 2, 3)
    with pytest.raises(ValueError, match="same shape"):
        train(GaussianDisplacement(), (x, x[:, :1]), (x, x), ATOM_TYPES, tmp_path, progress=False)
    with pytest.raises(ValueError, match="training_nll"):
        train(torch.nn.Linear(1, 1), (x, x), (x, x), ATOM_TYPES, tmp_path, progress=False)
    with pytest.raises(ValueError, match="multiple of validate_every"):
        TrainingSettings(validate_every=30, checkpoint_every=40)


def test_internal_coordinate_flow_learns_frames(tmp_path):
    """An independent IC flow on jittered alanine-dipeptide frames lowers its validation NLL."""
    modeller = build_peptide("A")
    x = torch.tensor(
        np.array(modeller.positions.value_in_unit(unit.nanometer)), dtype=torch.float32
    )
    generator = torch.Generator().manual_seed(0)
    frames = x + 0.005 * torch.randn(3000, *x.shape, generator=generator)
    train_frames, validation_frames = frames[:2500], frames[2500:]
    model = proposal_for_frames(
        "ic-independent", modeller.topology, train_frames, num_couplings=2, hidden=64
    )
    types = torch.arange(x.shape[0])
    settings = TrainingSettings(
        max_steps=100, batch_size=128, learning_rate=3e-3, warmup_steps=10,
        validate_every=25, checkpoint_every=50,
    )  # fmt: skip
    result = train(
        model,
        (train_frames, train_frames),
        (validation_frames, validation_frames),
        types,
        tmp_path,
        settings,
        progress=False,
    )
    with result.log_path.open() as handle:
        curve = [float(row["validation_nll"]) for row in csv.DictReader(handle)]
    assert curve[-1] < curve[0] - 10.0  # nats per frame, from the uniform start
