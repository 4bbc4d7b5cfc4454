"""`timewarp train`: training on a data folder, export, resume, mixture and bad options."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch
from openmm import app, unit

from openmm_timewarp.checkpoints import load_checkpoint
from openmm_timewarp.cli import main
from openmm_timewarp.data.md import (
    PROGRESS_FILE,
    RUN_FILE,
    TOPOLOGY_FILE,
    TRAJECTORY_FILE,
    RunSettings,
)
from openmm_timewarp.data.peptides import FORCEFIELD_NAME, build_peptide
from openmm_timewarp.models.contract import (
    atom_types_for_topology,
    check_contract,
    load_metadata,
    load_model,
)
from openmm_timewarp.proposals.cartesian import TimewarpProposal
from openmm_timewarp.proposals.cartesian.augment import random_rotations
from openmm_timewarp.proposals.ic.families import ICIndependentProposal

NUM_FRAMES = 1_200  # 1 ps apart: the independent family's 100 ps validation gap leaves 20 frames
FAST = ["--batch-size", "16", "--validate-every", "2", "--checkpoint-every", "2", "--no-progress"]
SMALL_IC = ["--num-couplings", "2", "--hidden", "16", "--num-bins", "4", *FAST]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `timewarp simulate` folder of two trajectories: alanine dipeptide jittered by an AR(1)
    process of 0.005 nm, as DCD with topology.pdb, run.json and progress.json."""
    root = tmp_path_factory.mktemp("data")
    modeller = build_peptide("A")
    x0 = np.array(modeller.positions.value_in_unit(unit.nanometer), dtype=np.float32)
    rng = np.random.default_rng(0)
    for index in range(2):
        folder = root / f"{index:02d}-synthetic"
        folder.mkdir()
        jitter = np.zeros_like(x0)
        frames = np.empty((NUM_FRAMES, *x0.shape), np.float32)
        for frame in range(NUM_FRAMES):
            jitter = 0.9 * jitter + 0.005 * np.sqrt(1 - 0.81) * rng.standard_normal(x0.shape)
            frames[frame] = x0 + jitter
        with mdtraj.formats.DCDTrajectoryFile(str(folder / TRAJECTORY_FILE), "w") as handle:
            handle.write(frames * 10.0)  # angstroms
        with open(folder / TOPOLOGY_FILE, "w") as handle:
            app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
        settings = RunSettings("A", num_frames=NUM_FRAMES, seed=index + 1)
        (folder / RUN_FILE).write_text(json.dumps(settings.to_json()))
        (folder / PROGRESS_FILE).write_text(json.dumps({"frames": NUM_FRAMES}))
    return root


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training folders of a tiny ic-conditional and ic-independent, 4 steps each."""
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for family, extra in (("ic-conditional", ["--tau-ps", "5"]), ("ic-independent", [])):
        folders[family] = root / family
        arguments = [data_dir, "-o", folders[family], "--family", family, *extra]
        assert train(*arguments, "--max-steps", "4", "--name", "tiny", *SMALL_IC) == 0
    return folders


def train(*arguments: str | Path) -> int:
    return main(["train", *map(str, arguments)])


def data_structure(data_dir: Path) -> tuple[app.Topology, torch.Tensor]:
    pdb = app.PDBFile(str(data_dir / "00-synthetic" / TOPOLOGY_FILE))
    positions = np.array(pdb.positions.value_in_unit(unit.nanometer), dtype=np.float32)
    return pdb.topology, torch.from_numpy(positions)


def check_model_file(path: Path, data_dir: Path):
    """Load a model file, check it against the contract on the data's molecule; its metadata."""
    module, metadata = load_model(path)
    topology, positions = data_structure(data_dir)
    types = torch.from_numpy(atom_types_for_topology(topology, metadata))
    check_contract(module, positions, types)
    noise = torch.randn(4, len(types), module.noise_dim, generator=torch.Generator())
    with torch.no_grad():
        proposals, log_q_ratio = module(positions, types, noise)
    assert torch.isfinite(proposals).all()
    # -inf rejects a proposal that labels equivalent atoms with another handedness than the
    # current state (docs/contract.md), which barely trained flows draw often.
    assert not torch.isnan(log_q_ratio).any() and (log_q_ratio < math.inf).all()
    assert metadata.temperature_K == 310.0 and metadata.forcefield == FORCEFIELD_NAME
    return metadata


def log_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "log.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_trained_models_are_exported_with_a_summary(trained, data_dir):
    conditional = check_model_file(trained["ic-conditional"] / "model.pt", data_dir)
    assert conditional.family == "ic-conditional" and conditional.name == "tiny"
    assert conditional.tau_ps == 5.0
    summary = conditional.training
    assert summary["steps"] == 4 and summary["data_ns"] == pytest.approx(2 * NUM_FRAMES / 1000)
    assert summary["best_validation_nll"] == pytest.approx(
        min(float(row["validation_nll"]) for row in log_rows(trained["ic-conditional"])),
        rel=1e-5,  # log.csv keeps 6 significant digits
    )
    assert summary["cpu_seconds"] > 0 and summary["settings"]["batch_size"] == 16
    independent = check_model_file(trained["ic-independent"] / "model.pt", data_dir)
    assert independent.family == "ic-independent" and independent.tau_ps == 500.0


@pytest.mark.parametrize(
    "family, model_class, extra",
    [
        ("ic-independent", ICIndependentProposal, SMALL_IC),
        ("timewarp-flow", TimewarpProposal, ["--tau-ps", "2", *FAST, "--batch-size", "4"]),
    ],
)
def test_rerun_resumes_exactly(data_dir, tmp_path, monkeypatch, family, model_class, extra):
    options = ["--family", family, "--max-steps", "6", *extra]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(data_dir, "-o", straight, *options) == 0

    training_nll = model_class.training_nll
    calls = []

    def interrupted_at_step_four(self, x_cond, x_next, atom_types):
        if self.training:
            calls.append(1)
            if len(calls) == 4:  # after the checkpoint of step 2
                raise KeyboardInterrupt("simulated interruption")
        return training_nll(self, x_cond, x_next, atom_types)

    monkeypatch.setattr(model_class, "training_nll", interrupted_at_step_four)
    assert train(data_dir, "-o", resumed, *options) == 130  # Ctrl-C: a message, no traceback
    assert [row["step"] for row in log_rows(resumed)] == ["2"]
    monkeypatch.setattr(model_class, "training_nll", training_nll)
    assert train(data_dir, "-o", resumed, *options) == 0

    curves = [
        [{key: value for key, value in row.items() if key != "seconds"} for row in log_rows(run)]
        for run in (straight, resumed)
    ]
    assert curves[0] == curves[1] and len(curves[0]) == 3
    best = [load_checkpoint(folder / "best_model.pt") for folder in (straight, resumed)]
    assert best[0].keys() == best[1].keys()
    assert all(torch.equal(best[0][key], best[1][key]) for key in best[0])


def test_mixture_of_two_trained_folders(trained, data_dir, tmp_path):
    output = tmp_path / "mixture"
    arguments = ["--conditional", trained["ic-conditional"], "--independent"]
    assert (
        train(
            "-o",
            output,
            "--family",
            "ic-mixture",
            *arguments,
            trained["ic-independent"],
            "--weight",
            "0.3",
        )
        == 0
    )
    metadata = check_model_file(output / "model.pt", data_dir)
    assert metadata.family == "ic-mixture" and metadata.tau_ps == 5.0
    assert metadata.training["weight"] == 0.3
    assert metadata.training["ic-independent"]["steps"] == 4


def test_timewarp_flow_trains_and_exports(data_dir, tmp_path):
    output = tmp_path / "flow"
    options = ["--family", "timewarp-flow", "--tau-ps", "2", "--max-steps", "2", *FAST]
    assert train(data_dir, "-o", output, *options, "--batch-size", "4") == 0
    metadata = check_model_file(output / "model.pt", data_dir)
    assert metadata.family == "timewarp-flow" and metadata.atom_type_scheme == "element"
    assert metadata.atom_types == ["C", "H", "N", "O"] and metadata.num_atoms == 22
    assert metadata.training["architecture"] == {"preset": "cpu-small"}


@pytest.mark.parametrize("family", ["ic-rotor", "ic-backbone"])
def test_transferable_model_trains_and_proposes_for_another_peptide(
    family, data_dir, tmp_path, monkeypatch
):
    from openmm_timewarp.models.resolve import model_file_for_topology

    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path / "cache"))
    output = tmp_path / "rotor"
    options = ["--family", family, "--hidden", "16", "--num-bins", "4", "--max-steps", "4"]
    assert train(data_dir, "-o", output, *options, *FAST) == 0
    metadata = load_metadata(output / "model.pt")
    assert metadata.family == family and metadata.num_atoms is None
    assert metadata.atom_type_scheme == "peptide-atom"
    assert metadata.training["data"] == data_dir.name and metadata.training["steps"] == 4
    # Built for a molecule it never saw, the proposal meets the contract.
    modeller = build_peptide("WE", "zwitterionic")
    module, built = load_model(model_file_for_topology(output / "model.pt", modeller.topology))
    assert built.family == family and built.num_atoms == modeller.topology.getNumAtoms()
    positions = torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer)))
    check_contract(module, positions.float(), torch.arange(built.num_atoms))


def test_random_rotations_are_proper_rotations():
    torch.manual_seed(0)
    rotations = random_rotations(1000)
    identity = torch.eye(3).expand(1000, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(1, 2), identity, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(1000), atol=1e-5)
    # Uniform rotations turn a fixed vector to a uniform direction: mean 0, each 1/sqrt(3000) s.e.
    directions = rotations @ torch.tensor([0.0, 0.0, 1.0])
    assert directions.mean(0).abs().max() < 4 / 3000**0.5


def test_a_peptide_folder_without_frames_is_refused(data_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    shutil.copytree(data_dir, empty)
    for progress in empty.glob(f"*/{PROGRESS_FILE}"):
        progress.write_text(json.dumps({"frames": 0}))
    options = ["--family", "ic-backbone", "--max-steps", "2", *FAST]
    assert train(data_dir, empty, "-o", tmp_path / "run", *options) == 2
    assert "no committed training frames" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--family", "ic-conditional"], "give --tau-ps"),
        (["--family", "ic-independent", "--preset", "cpu-small"], "--preset sizes a timewarp-flow"),
        (["--family", "ic-independent", "--weight", "0.5"], "for --family ic-mixture"),
        (["--family", "ic-conditional", "--tau-ps", "-1"], "must be positive"),
        (["--family", "ic-independent", "--batch-size", "0"], "batch_size must be a positive"),
        (["--family", "ic-conditional", "--tau-ps", "5000"], "Use a smaller tau or more data"),
    ],
)
def test_bad_options_are_refused(data_dir, tmp_path, capsys, arguments, message):
    assert train(data_dir, "-o", tmp_path / "run", *arguments, "--no-progress") == 2
    assert message in capsys.readouterr().err


def test_bad_folders_are_refused(trained, data_dir, tmp_path, capsys):
    assert train("-o", tmp_path / "run", "--family", "ic-independent") == 2
    assert "give DATA" in capsys.readouterr().err
    assert train(tmp_path / "missing", "-o", tmp_path / "run", "--family", "ic-independent") == 2
    assert "is not a folder" in capsys.readouterr().err
    changed = ["--family", "ic-independent", "--max-steps", "4", *SMALL_IC, "--hidden", "32"]
    assert train(data_dir, "-o", trained["ic-independent"], *changed) == 2
    assert "other architecture" in capsys.readouterr().err
    swapped = [
        "--conditional",
        trained["ic-independent"],
        "--independent",
        trained["ic-conditional"],
    ]
    assert train("-o", tmp_path / "mix", "--family", "ic-mixture", *swapped, "--weight", "0.5") == 2
    assert "not an ic-conditional" in capsys.readouterr().err
    mixture = [
        "--conditional",
        trained["ic-conditional"],
        "--independent",
        trained["ic-independent"],
    ]
    assert train("-o", tmp_path / "mix", "--family", "ic-mixture", *mixture, "--weight", "1") == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err
    assert train("-o", tmp_path / "mix", "--family", "ic-mixture", "--tau-ps", "5") == 2
    assert "needs --conditional FOLDER" in capsys.readouterr().err
    with_tau = [*mixture, "--weight", "0.5", "--tau-ps", "5"]
    assert train("-o", tmp_path / "mix", "--family", "ic-mixture", *with_tau) == 2
    assert "takes tau from its conditional" in capsys.readouterr().err


FINE_TUNE = [
    "--fine-tune-validate-every",
    "1",
    "--fine-tune-checkpoint-every",
    "2",
    "--fine-tune-batch-size",
    "8",
    "--fine-tune-num-starts",
    "2",
    "--fine-tune-proposals-per-start",
    "2",
    "--fine-tune-validation-starts",
    "4",
]


def test_fine_tune_after_maximum_likelihood(data_dir, tmp_path, capsys):
    output = tmp_path / "fine-tuned"
    options = ["--family", "ic-independent", "--max-steps", "4", *SMALL_IC, *FINE_TUNE]
    assert train(data_dir, "-o", output, *options, "--fine-tune-steps", "2") == 0
    metadata = check_model_file(output / "model.pt", data_dir)
    summary = metadata.training["fine_tune"]
    assert summary["steps"] == 2 and summary["settings"]["objective"] == "acceptance"
    assert summary["settings"]["weight"] == 0.1 and metadata.training["steps"] == 4
    rows = log_rows(output / "fine-tune-acceptance")
    assert [row["step"] for row in rows] == ["0", "1", "2"]
    for folder in (output, output / "fine-tune-acceptance"):  # loss plots beside the logs
        assert (folder / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert summary["initial_validation_acceptance"] == pytest.approx(
        float(rows[0]["validation_acceptance"]), rel=1e-5
    )
    more = [*options, "--fine-tune-steps", "3", "--fine-tune-objective", "reverse-kl"]
    assert train(data_dir, "-o", output, *more) == 0
    assert load_model(output / "model.pt")[1].training["fine_tune"]["steps"] == 3
    assert len(log_rows(output / "fine-tune-reverse-kl")) == 4


def test_fine_tune_of_a_timewarp_flow(data_dir, tmp_path):
    """The acceptance objective runs through the contract's forward of any family."""
    output = tmp_path / "flow"
    options = ["--family", "timewarp-flow", "--tau-ps", "2", "--max-steps", "2", *FAST]
    fine = [*FINE_TUNE, "--fine-tune-steps", "2"]
    assert train(data_dir, "-o", output, *options, "--batch-size", "4", *fine) == 0
    metadata = check_model_file(output / "model.pt", data_dir)
    assert metadata.family == "timewarp-flow"
    assert metadata.training["fine_tune"]["steps"] == 2
    assert metadata.training["fine_tune"]["skipped_steps"] == 0
    assert len(log_rows(output / "fine-tune-acceptance")) == 3


def test_bad_fine_tune_options_are_refused(trained, data_dir, tmp_path, capsys):
    """Refused before any training: no folder is written."""
    conditional = ["--family", "ic-conditional", "--tau-ps", "5", "--max-steps", "4", *SMALL_IC]
    bad = ["--fine-tune-steps", "1", "--fine-tune-objective", "reverse-kl"]
    assert train(data_dir, "-o", tmp_path / "conditional", *conditional, *bad) == 2
    assert "reverse-kl objective is for ic-independent" in capsys.readouterr().err
    independent = ["--family", "ic-independent", "--max-steps", "4", *SMALL_IC]
    heavy = ["--fine-tune-steps", "1", "--fine-tune-weight", "2"]
    assert train(data_dir, "-o", tmp_path / "independent", *independent, *heavy) == 2
    assert "weight must lie in [0, 1]" in capsys.readouterr().err
    mixture = [
        *["--conditional", trained["ic-conditional"], "--independent", trained["ic-independent"]],
        *["--weight", "0.5", "--fine-tune-steps", "1"],
    ]
    assert train("-o", tmp_path / "mix", "--family", "ic-mixture", *mixture) == 2
    assert "not the mixture" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
