"""`timewarp train` on MD pooled with `timewarp sample` chains: the pooled frames, the metadata,
the refusals, and a chain still running."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_timewarp.checkpoints import load_checkpoint
from openmm_timewarp.cli import main
from openmm_timewarp.data.chain_data import burn_in_frames, open_chain
from openmm_timewarp.data.md import (
    PROGRESS_FILE,
    RUN_FILE,
    SYSTEM_FILE,
    TOPOLOGY_FILE,
    TRAJECTORY_FILE,
    RunSettings,
)
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.models.contract import load_metadata
from openmm_timewarp.training.folder import DEFAULT_CHAIN_BURN_IN

MD_FRAMES = 400
CHAIN_STEPS, CHAIN_INTERVAL = 200, 5  # 40 frames per chain
FAST = ["--batch-size", "8", "--validate-every", "2", "--checkpoint-every", "2", "--no-progress"]
SMALL = ["--hidden", "16", "--num-bins", "4", "--max-steps", "2", *FAST]


def write_md_folder(folder: Path, sequence: str, temperature_K: float = 310.0) -> None:
    """A `timewarp simulate` folder of the zwitterion: the built structure jittered by 0.005 nm,
    with the System the package builds for it."""
    modeller = build_peptide(sequence, "zwitterionic")
    x0 = np.array(modeller.positions.value_in_unit(unit.nanometer), dtype=np.float32)
    frames = x0 + 0.005 * np.random.default_rng(0).standard_normal((MD_FRAMES, *x0.shape))
    run = folder / "00-synthetic"
    run.mkdir(parents=True)
    with mdtraj.formats.DCDTrajectoryFile(str(run / TRAJECTORY_FILE), "w") as handle:
        handle.write(frames.astype(np.float32) * 10.0)  # angstroms
    with open(run / TOPOLOGY_FILE, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    system = create_system(modeller.topology)
    (run / SYSTEM_FILE).write_text(openmm.XmlSerializer.serialize(system))
    settings = RunSettings(
        sequence, "zwitterionic", temperature_K=temperature_K, num_frames=MD_FRAMES
    )
    (run / RUN_FILE).write_text(json.dumps(settings.to_json()))
    (run / PROGRESS_FILE).write_text(json.dumps({"frames": MD_FRAMES}))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MD of AL, and a `timewarp sample` output of one chain of the bundled model on AL."""
    root = tmp_path_factory.mktemp("pooled")
    write_md_folder(root / "AL", "AL")
    chains = root / "chains"
    arguments = ["sample", "peptides", "AL", "--termini", "zwitterionic", "--no-progress"]
    options = ["--steps", str(CHAIN_STEPS), "--trajectory-interval", str(CHAIN_INTERVAL)]
    assert main([*arguments, *options, "-o", str(chains)]) == 0
    return {"md": root / "AL", "chains": chains, "chain": chains / "0000-AL"}


def train(*arguments: str | Path) -> int:
    return main(["train", *map(str, arguments)])


def test_md_and_chain_frames_train_one_model(data, tmp_path):
    output = tmp_path / "run"
    assert train(data["md"], data["chains"], "-o", output, "--family", "ic-backbone", *SMALL) == 0
    chain_frames = CHAIN_STEPS // CHAIN_INTERVAL
    kept = chain_frames - burn_in_frames(chain_frames, DEFAULT_CHAIN_BURN_IN)
    (peptide,) = load_checkpoint(output / "data.pt")["peptides"]
    md_train = int(0.8 * MD_FRAMES)
    assert len(peptide["train"][0]) == md_train + int(0.8 * kept)
    assert peptide["weight"] == md_train  # the molecule's weight is its MD frames'
    training = load_metadata(output / "model.pt").training
    assert training["chain_burn_in"] == DEFAULT_CHAIN_BURN_IN
    (sources,) = training["sources"].values()
    assert sources["md"] == {"00-synthetic": MD_FRAMES}
    (chain,) = sources["chains"]
    assert chain["folder"] == "0000-AL" and chain["frames"] == chain_frames
    assert chain["model_name"].startswith("peptides") and len(chain["model_sha256"]) == 64
    # Without chains the recipe and metadata are as before.
    assert train(data["md"], "-o", tmp_path / "md", "--family", "ic-backbone", *SMALL) == 0
    assert "sources" not in load_metadata(tmp_path / "md" / "model.pt").training


def test_a_single_molecule_family_pools_a_chain_folder(data, tmp_path):
    output = tmp_path / "run"
    arguments = [data["md"], data["chain"], "-o", output, "--family", "ic-independent"]
    assert train(*arguments, "--num-couplings", "2", *SMALL) == 0
    assert load_metadata(output / "model.pt").training["sources"]["AL"]["chains"]


def test_a_running_chain_gives_its_committed_frames_only(data, tmp_path):
    running = tmp_path / "0000-AL"
    shutil.copytree(data["chain"], running)
    committed = open_chain(running).load()
    # Frames written after the last checkpoint (here garbage) are not read.
    with mdtraj.formats.DCDTrajectoryFile(str(running / TRAJECTORY_FILE), "r") as handle:
        xyz, _, _ = handle.read()
    extra = np.full((3, *xyz.shape[1:]), np.nan, np.float32)
    with mdtraj.formats.DCDTrajectoryFile(str(running / TRAJECTORY_FILE), "w") as handle:
        handle.write(np.concatenate([xyz, extra]))
    chain = open_chain(running)
    assert chain.num_frames == CHAIN_STEPS // CHAIN_INTERVAL
    np.testing.assert_array_equal(chain.load(), committed)
    # A chain that has committed nothing yet gives no frames.
    (running / "checkpoint.pt").unlink()
    assert open_chain(running).load().shape == (0, *committed.shape[1:])


def test_pair_families_refuse_chains(data, tmp_path, capsys):
    arguments = [data["md"], data["chain"], "-o", tmp_path / "run", "--no-progress"]
    assert train(*arguments, "--family", "ic-conditional", "--tau-ps", "5") == 2
    assert "not dynamics at any lag" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_chains_that_do_not_match_the_md_are_refused(data, tmp_path, capsys):
    def refused(*folders: Path) -> str:
        output = tmp_path / "run"
        assert train(*folders, "-o", output, "--family", "ic-backbone", *SMALL) == 2
        assert not output.exists()
        return capsys.readouterr().err

    write_md_folder(tmp_path / "LA", "LA")
    assert "no MD data of that sequence" in refused(tmp_path / "LA", data["chain"])
    assert "give the `timewarp simulate`" in refused(data["chain"])
    write_md_folder(tmp_path / "hot" / "AL", "AL", temperature_K=350.0)
    assert "pool data of one temperature" in refused(tmp_path / "hot" / "AL", data["chain"])
    constrained = tmp_path / "constrained" / "AL"
    shutil.copytree(data["md"], constrained)
    system_file = constrained / "00-synthetic" / SYSTEM_FILE
    system = openmm.XmlSerializer.deserialize(system_file.read_text())
    system.addConstraint(0, 1, 0.101)
    system_file.write_text(openmm.XmlSerializer.serialize(system))
    assert "samples another System" in refused(constrained, data["chain"])
    other_atoms = tmp_path / "renamed"
    shutil.copytree(data["chain"], other_atoms)
    pdb = app.PDBFile(str(other_atoms / TOPOLOGY_FILE))
    next(pdb.topology.atoms()).name = "N1"
    with open(other_atoms / TOPOLOGY_FILE, "w") as handle:
        app.PDBFile.writeFile(pdb.topology, pdb.positions, handle)
    assert "other atoms or another atom order" in refused(data["md"], other_atoms)


def test_what_is_neither_md_nor_chains_is_refused(data, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    (tmp_path / "empty").mkdir()
    for folder, message in (
        (tmp_path / "file", "is not a folder"),
        (tmp_path / "empty", "neither a `timewarp simulate` data folder"),
    ):
        assert train(data["md"], folder, "-o", tmp_path / "run", "--family", "ic-backbone") == 2
        assert message in capsys.readouterr().err
    twice = [data["md"], data["chains"], data["chain"], "-o", tmp_path / "run"]
    assert train(*twice, "--family", "ic-backbone") == 2
    assert "given twice" in capsys.readouterr().err
    old = tmp_path / "old"
    shutil.copytree(data["chain"], old)
    (old / "chain.json").unlink()
    assert train(data["md"], old, "-o", tmp_path / "run", "--family", "ic-backbone") == 2
    assert "earlier version of `timewarp sample`" in capsys.readouterr().err
    arguments = [data["md"], data["chain"], "-o", tmp_path / "run", "--family", "ic-backbone"]
    assert train(*arguments, "--chain-burn-in", "1") == 2
    assert "fraction in [0, 1)" in capsys.readouterr().err
