"""Maximum-likelihood training: convergence, early stopping, checkpoints and exact resume;
several molecules in one model; several processes under torchrun."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from openmm_timewarp.checkpoints import load_checkpoint, save_checkpoint
from openmm_timewarp.cli import main
from openmm_timewarp.data.md import (
    PROGRESS_FILE,
    RUN_FILE,
    TOPOLOGY_FILE,
    TRAJECTORY_FILE,
    RunSettings,
)
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.models.contract import load_model
from openmm_timewarp.proposals.ic.families import proposal_for_frames
from openmm_timewarp.training.likelihood import (
    PeptideData,
    TrainingSettings,
    train,
    train_peptides,
    validation_nll,
)

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
    best = load_checkpoint(result.best_model_path)
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


def test_checkpoint_of_the_earlier_loop_resumes(tmp_path):
    # The maximum-likelihood checkpoints of earlier versions have no skipped-step count or CPU time.
    data = gaussian_pairs(500, 0.3, 0.5, seed=0), gaussian_pairs(100, 0.3, 0.5, seed=1)
    settings = TrainingSettings(max_steps=80, validate_every=20, checkpoint_every=40)
    reference = GaussianDisplacement()
    train(reference, *data, ATOM_TYPES, tmp_path / "straight", settings, progress=False)
    interrupted = GaussianDisplacement()
    interrupted.fail_at_call = 50  # after the checkpoint at step 40
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, *data, ATOM_TYPES, tmp_path / "resumed", settings, progress=False)
    path = tmp_path / "resumed" / "checkpoint.pt"
    checkpoint = load_checkpoint(path)
    assert checkpoint["step"] == 40
    del checkpoint["skipped"], checkpoint["cpu_seconds"]
    save_checkpoint(checkpoint, path)
    resumed = GaussianDisplacement()
    train(resumed, *data, ATOM_TYPES, tmp_path / "resumed", settings, progress=False)
    assert torch.equal(resumed.shift, reference.shift)
    assert torch.equal(resumed.log_scale, reference.log_scale)


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


def test_molecules_are_drawn_in_proportion_to_their_pairs(tmp_path):
    """Two molecules of different sizes: the fitted shift is the pair-weighted mean of theirs."""
    a = PeptideData(gaussian_pairs(3000, 0.3, 0.5, 0), gaussian_pairs(600, 0.3, 0.5, 1), ATOM_TYPES)
    b_train = [x[:, :1] for x in gaussian_pairs(1000, -0.3, 0.5, 2)]  # one atom instead of two
    b_validation = [x[:, :1] for x in gaussian_pairs(200, -0.3, 0.5, 3)]
    b = PeptideData(tuple(b_train), tuple(b_validation), ATOM_TYPES[:1])
    model = GaussianDisplacement()
    settings = TrainingSettings(**{**SETTINGS.__dict__, "max_steps": 600, "learning_rate": 0.02})
    result = train_peptides(model, [a, b], tmp_path, settings, progress=False)
    # Batches of 64 drawn from a with probability 3/4: the optimum weights the coordinates of
    # a (2 atoms) and b (1 atom) by 3000 x 2 : 1000 x 1, so shift = (6 x 0.3 - 0.3) / 7.
    # Adam with lr 0.02 on batches of 64 x 6 coordinates jitters by about 0.5 / sqrt(384) x 0.4.
    assert torch.allclose(model.shift.detach(), torch.full((3,), 1.5 / 7), atol=0.03)
    validation = [validation_nll(model, p.validation, p.atom_types) for p in (a, b)]
    pooled = (600 * validation[0] + 200 * validation[1]) / 800
    assert result.best_validation_nll == pytest.approx(pooled, rel=1e-9)


def write_synthetic_data(root: Path, sequence: str, termini: str, frames: int) -> Path:
    """A `timewarp simulate` folder with one trajectory: the built peptide jittered by an AR(1)
    process of 0.005 nm (DCD, topology.pdb, run.json, progress.json)."""
    modeller = build_peptide(sequence, termini)
    x0 = np.array(modeller.positions.value_in_unit(unit.nanometer), dtype=np.float32)
    rng = np.random.default_rng(len(root.name))
    folder = root / "00-synthetic"
    folder.mkdir(parents=True)
    jitter = np.zeros_like(x0)
    xyz = np.empty((frames, *x0.shape), np.float32)
    for frame in range(frames):
        jitter = 0.9 * jitter + 0.005 * np.sqrt(1 - 0.81) * rng.standard_normal(x0.shape)
        xyz[frame] = x0 + jitter
    with mdtraj.formats.DCDTrajectoryFile(str(folder / TRAJECTORY_FILE), "w") as handle:
        handle.write(xyz * 10.0)  # angstroms
    with open(folder / TOPOLOGY_FILE, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    settings = RunSettings(sequence, termini=termini, num_frames=frames)
    (folder / RUN_FILE).write_text(json.dumps(settings.to_json()))
    (folder / PROGRESS_FILE).write_text(json.dumps({"frames": frames}))
    return root


def test_transferable_flow_on_two_dipeptides_runs_a_third(tmp_path, capsys):
    """`timewarp train` on two dipeptide folders: one model of any size that an unseen dipeptide
    runs through TimewarpIntegrator."""
    folders = [
        write_synthetic_data(tmp_path / "data" / name, name, "zwitterionic", 400)
        for name in ("AG", "SV")
    ]
    internal = ["--family", "ic-conditional", "--tau-ps", "2", "-o", str(tmp_path / "ic")]
    assert main(["train", *map(str, folders), *internal]) == 2
    assert "tied to one molecule" in capsys.readouterr().err
    output = tmp_path / "transferable"
    options = ["--family", "timewarp-flow", "--tau-ps", "2", "--max-steps", "40"]
    options += ["--batch-size", "16", "--validate-every", "10", "--checkpoint-every", "20"]
    assert main(["train", *map(str, folders), "-o", str(output), *options, "--no-progress"]) == 0
    with (output / "log.csv").open() as handle:
        curve = [float(row["validation_nll"]) for row in csv.DictReader(handle)]
    assert min(curve) < curve[0]
    record = json.loads((output / "train.json").read_text())
    assert record["name"] == "data" and set(record["facts"]["frames"]) == {"AG", "SV"}
    module, metadata = load_model(output / "model.pt")
    assert metadata.num_atoms is None and module.num_atoms == 0
    assert metadata.atom_type_scheme == "peptide-atom" and "OXT" in metadata.atom_types

    from openmm_timewarp.integrator import TimewarpIntegrator

    unseen = build_peptide("WK", "zwitterionic")  # neither residue nor size seen in training
    integrator = TimewarpIntegrator(output / "model.pt", 310.0, topology=unseen.topology, seed=3)
    context = openmm.Context(
        create_system(unseen.topology), integrator, openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(unseen.positions)
    integrator.step(5)
    assert integrator.getNumProposed() == 5
    positions = context.getState(getPositions=True).getPositions(asNumpy=True)
    assert np.isfinite(positions.value_in_unit(unit.nanometer)).all()


def run_torchrun(arguments: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
    """``torchrun --standalone ARGUMENTS`` on one thread per process; the whole process group is
    killed on timeout, so that no worker outlives a failed test."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", *arguments]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def finished(run: subprocess.CompletedProcess) -> bool:
    """The torchrun launch succeeded, or only gloo's abort at a process's exit failed it ("terminate
    called without an active exception", about 1 run in 30 here, also with a barrier before
    ``destroy_process_group``): the files that the tests check are written before, and decide."""
    return run.returncode == 0 or "terminate called without an active exception" in run.stderr


@pytest.mark.slow
def test_torchrun_with_two_processes_matches_one_process(tmp_path):
    """`torchrun --nproc_per_node=2 ... train` on CPU (gloo): process 0 alone writes the folder,
    and the validation NLL lies within the spread that the seed gives one-process training."""
    data = write_synthetic_data(tmp_path / "ad", "A", "capped", 600)
    options = ["--family", "ic-conditional", "--tau-ps", "2", "--num-couplings", "2"]
    options += ["--hidden", "16", "--num-bins", "4", "--max-steps", "60", "--batch-size", "32"]
    options += ["--validate-every", "20", "--checkpoint-every", "20", "--no-progress"]
    single = []
    for seed in range(4):
        output = tmp_path / f"single-{seed}"
        assert main(["train", str(data), "-o", str(output), *options, "--seed", str(seed)]) == 0
        single.append(json.loads((output / "train.json").read_text()))
    command = ["--nproc_per_node=2", "-m", "openmm_timewarp", "train", str(data)]
    run = run_torchrun([*command, "-o", str(tmp_path / "ddp"), *options, "--seed", "0"])
    assert finished(run), run.stderr[-2000:]
    assert len(re.findall("model written to", run.stdout)) == 1  # printed by process 0 alone
    steps = [int(row["step"]) for row in csv.DictReader((tmp_path / "ddp" / "log.csv").open())]
    assert steps == [20, 40, 60]
    record = json.loads((tmp_path / "ddp" / "train.json").read_text())
    assert record["summary"]["steps"] == 60
    nll = record["summary"]["best_validation_nll"]
    reference = np.array([r["summary"]["best_validation_nll"] for r in single])
    # The seed (initial weights and batch draws) moves the NLL of this short training by a few
    # nats; two processes drawing half a batch each must stay within 3 standard deviations.
    assert abs(nll - reference.mean()) < 3 * reference.std(ddof=1)

    odd = run_torchrun([*command, "-o", str(tmp_path / "odd"), *options, "--batch-size", "33"])
    assert odd.returncode != 0 and "not divisible by the 2 processes" in odd.stderr
    assert not (tmp_path / "odd").exists()


DDP_RESUME_SCRIPT = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, sys.argv[2])
from test_training import ATOM_TYPES, SETTINGS, GaussianDisplacement, gaussian_pairs

from openmm_timewarp.training.distributed import distributed_process_group
from openmm_timewarp.training.likelihood import PeptideData, train_peptides


class InterruptedAtStep(GaussianDisplacement):
    # Counts training calls only: process 0 alone validates, so all calls differ between ranks.
    def training_nll(self, x_cond, x_next, atom_types):
        self.steps = getattr(self, "steps", 0) + self.training
        if self.steps == 150:  # between the checkpoints at steps 120 and 160
            raise KeyboardInterrupt("simulated interruption")
        return super().training_nll(x_cond, x_next, atom_types)


torch.set_num_threads(1)
output = Path(sys.argv[1])
pairs = gaussian_pairs(4000, 0.3, 0.5, 0), gaussian_pairs(500, 0.3, 0.5, 1)
data = [PeptideData(*pairs, ATOM_TYPES)]
with distributed_process_group() as group:
    straight = GaussianDisplacement()
    train_peptides(straight, data, output / "straight", SETTINGS, progress=False)
    interrupted = InterruptedAtStep()
    try:
        train_peptides(interrupted, data, output / "resumed", SETTINGS, progress=False)
    except KeyboardInterrupt:
        pass
    resumed = GaussianDisplacement()
    train_peptides(resumed, data, output / "resumed", SETTINGS, progress=False)
    same = torch.equal(straight.shift, resumed.shift) and torch.equal(
        straight.log_scale, resumed.log_scale
    )
    (output / f"same-{group.rank}").write_text(str(same))
"""


@pytest.mark.slow
def test_torchrun_training_resumes_exactly(tmp_path):
    """Two processes interrupted between checkpoints and run again end where an uninterrupted
    two-process run ends, in both processes, with the same log."""
    script = tmp_path / "resume.py"
    script.write_text(DDP_RESUME_SCRIPT)
    run = run_torchrun(
        ["--nproc_per_node=2", str(script), str(tmp_path), str(Path(__file__).parent)]
    )
    assert finished(run), run.stderr[-2000:]
    assert [(tmp_path / f"same-{rank}").read_text() for rank in (0, 1)] == ["True", "True"]
    logs = [(tmp_path / name / "log.csv").read_text() for name in ("straight", "resumed")]
    columns = [[line.split(",")[:3] for line in log.splitlines()] for log in logs]
    assert columns[0] == columns[1] and len(columns[0]) == 1 + 300 // 20
