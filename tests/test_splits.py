"""The dipeptide and tetrapeptide training / held-out splits (complete or honest for transfer,
disjoint, reproducible, committed) and the residue-independent atom types of transferable models."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from openmm import app

from openmm_timewarp.cli import main
from openmm_timewarp.data.datasets import list_trajectories
from openmm_timewarp.data.peptides import ONE_TO_THREE, build_peptide, peptide_atom_vocabulary
from openmm_timewarp.data.splits import (
    SPLIT_KINDS,
    adjacent_pairs,
    all_sequences,
    dipeptide_split,
    load_split,
    recipe_split,
    split_file,
    tetrapeptide_split,
    write_split,
)
from openmm_timewarp.models.contract import ModelMetadata, atom_types_for_topology

TRANSFERABLE = ModelMetadata(
    name="dipeptides",
    family="timewarp-flow",
    tau_ps=1.0,
    temperature_K=310.0,
    forcefield="amber14-all + OBC2 (GBSAOBCForce)",
    atom_type_scheme="peptide-atom",
    atom_types=list(peptide_atom_vocabulary()),
)


@pytest.fixture(scope="module")
def tetrapeptides():
    return tetrapeptide_split()


def test_all_sequences_are_every_word_of_the_20_residues():
    sequences = all_sequences(2)
    assert len(sequences) == len(set(sequences)) == 400
    assert {letter for sequence in sequences for letter in sequence} == set(ONE_TO_THREE)
    assert all(len(sequence) == 2 for sequence in sequences)
    assert len(set(all_sequences(4))) == 20**4
    assert adjacent_pairs("KLED") == ["KL", "LE", "ED"]
    with pytest.raises(ValueError, match="at least one residue"):
        all_sequences(0)


def test_dipeptide_split_is_disjoint_complete_and_at_most_half_for_training():
    split = dipeptide_split()
    training, held_out = set(split.training), set(split.held_out)
    assert len(training) == len(split.training) <= 200
    assert not training & held_out
    assert training | held_out == set(all_sequences(2))
    assert list(split.held_out) == sorted(split.held_out)


def test_tetrapeptide_training_sees_no_held_out_dipeptide_even_as_a_pair(tetrapeptides):
    dipeptides = dipeptide_split()
    training, held_out = set(tetrapeptides.training), set(tetrapeptides.held_out)
    assert len(training) == len(tetrapeptides.training) == 200
    assert len(held_out) == len(tetrapeptides.held_out) == 100
    assert not training & held_out
    assert all(len(s) == 4 for s in training | held_out)
    pairs = {pair for sequence in training for pair in adjacent_pairs(sequence)}
    assert pairs <= set(dipeptides.training)
    assert not pairs & set(dipeptides.held_out)
    assert list(tetrapeptides.held_out) == sorted(tetrapeptides.held_out)
    # Training keeps the draw's order (any prefix a random sample), not a sorted one.
    assert list(tetrapeptides.training) != sorted(tetrapeptides.training)


def test_held_out_tetrapeptides_are_drawn_from_all_others(tetrapeptides):
    # Drawn among all unseen tetrapeptides, about 7 in 8 hold a held-out dipeptide (a draw among
    # the training-pair ones only would give none); 100 draws: 87.5 +- 3.3 expected.
    held_out_pairs = set(dipeptide_split().held_out)
    with_held_out_pair = [
        s for s in tetrapeptides.held_out if set(adjacent_pairs(s)) & held_out_pairs
    ]
    assert 70 <= len(with_held_out_pair) < 100


def test_splits_are_reproducible_and_depend_on_the_seed(tetrapeptides):
    assert dipeptide_split() == dipeptide_split()
    assert dipeptide_split(seed=1).training != dipeptide_split().training
    small = tetrapeptide_split(seed=1, num_training=10, num_held_out=5)
    assert small == tetrapeptide_split(seed=1, num_training=10, num_held_out=5)
    assert small.training != tetrapeptides.training[:10]


@pytest.mark.parametrize("kind", SPLIT_KINDS)
def test_committed_files_are_the_recipes_output(kind, tetrapeptides):
    assert split_file(kind).is_file()
    expected = tetrapeptides if kind == "tetrapeptides" else recipe_split(kind)
    assert load_split(kind) == expected


def test_round_trip_and_bad_input(tmp_path):
    path = tmp_path / "split.json"
    write_split(dipeptide_split(seed=5, num_training=10), path)
    assert load_split(path=path) == dipeptide_split(seed=5, num_training=10)
    with pytest.raises(ValueError, match="at most half"):
        dipeptide_split(num_training=201)
    with pytest.raises(ValueError, match="made of training dipeptides"):
        tetrapeptide_split(num_training=10**6)
    with pytest.raises(ValueError, match="num_held_out"):
        tetrapeptide_split(num_training=10, num_held_out=0)
    with pytest.raises(ValueError, match="Unknown split 'tripeptides'"):
        load_split("tripeptides")
    path.write_text("{")
    with pytest.raises(ValueError, match="timewarp tetrapeptides --write"):
        load_split("tetrapeptides", path)


def test_cli_lists_either_split(capsys, tetrapeptides):
    assert main(["dipeptides", "--list", "train", "--start", "2", "--count", "3"]) == 0
    assert capsys.readouterr().out.split() == list(dipeptide_split().training[2:5])
    assert main(["tetrapeptides", "--list", "train", "--start", "2", "--count", "3"]) == 0
    assert capsys.readouterr().out.split() == list(tetrapeptides.training[2:5])
    assert main(["tetrapeptides", "--list", "held-out", "--shuffle", "1", "--count", "8"]) == 0
    subset = capsys.readouterr().out.split()
    assert len(set(subset)) == 8 and set(subset) <= set(tetrapeptides.held_out)
    assert subset != sorted(subset)
    assert main(["tetrapeptides", "--list", "held-out", "--start", "100"]) == 2
    assert "past the end of the 100" in capsys.readouterr().err
    assert main(["tetrapeptides"]) == 2
    with pytest.raises(SystemExit):
        main(["tetrapeptides", "--list", "train", "--count", "0"])


GENERATE = Path(__file__).parents[1] / "examples" / "generate_peptide_data.sh"


def generate(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the data script with this interpreter's ``timewarp`` first on PATH, outside any job
    array."""
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("SLURM_ARRAY_TASK_ID", "TASK_INDEX")
    }
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(GENERATE), "-o", str(tmp_path / "data"), *args],
        env={**inherited, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generation_script_refuses_bad_input_before_simulating(tmp_path):
    result = generate("tripeptides", "2", "0.1", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "SPLIT must be dipeptides or tetrapeptides, got 'tripeptides'" in result.stderr
    result = generate("tetrapeptides", "2", tmp_path=tmp_path)
    assert result.returncode == 2 and "LENGTH_NS" in result.stderr
    result = generate("--task", "tetrapeptides", "0.1", tmp_path=tmp_path)
    assert result.returncode != 0 and "TASK_INDEX" in result.stderr
    result = generate("--task", "tetrapeptides", "0.1", tmp_path=tmp_path, TASK_INDEX="200")
    assert result.returncode != 0 and "past the end of the 200" in result.stderr
    assert not any((tmp_path / "data").iterdir())


def test_generation_script_reports_a_failed_sequence_and_exits_1(tmp_path):
    sequence = dipeptide_split().training[0]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / sequence).write_text("a file where the sequence's folder goes")
    result = generate("dipeptides", "1", "0.001", tmp_path=tmp_path)
    assert result.returncode == 1
    assert f"{sequence} failed (exit status 2)" in result.stderr
    assert f"failed: {sequence}@0.001 (run again to retry)" in result.stderr


def test_generation_script_puts_a_basin_start_next_to_the_extended_run(tmp_path):
    # One molecule, one training folder: the alphaL-started trajectory joins the extended one.
    sequence = dipeptide_split().training[0]
    assert generate("dipeptides", "1", "0.001", tmp_path=tmp_path).returncode == 0
    result = generate("--start", "alphaL", "dipeptides", "1", "0.001", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = sorted(p.name for p in (tmp_path / "data" / sequence).iterdir())
    assert runs == ["00-alphaL", "00-extended"]
    phi, _ = list_trajectories(tmp_path / "data" / sequence / "00-alphaL")[0].backbone_angles()
    assert phi.size and np.all(phi > 0)
    refused = generate("--start", "alphaQ", "dipeptides", "1", "0.001", tmp_path=tmp_path)
    assert refused.returncode == 1 and "alphaQ" in refused.stderr


@pytest.mark.slow
def test_generation_script_killed_and_rerun_gives_the_uninterrupted_data(tmp_path):
    # The first training dipeptide in two rounds (4 then 8 frames); the killed job is stopped
    # (SIGKILL to its whole process group) once its first round is committed, wherever the second
    # is, and rerun: the data are bit for bit the uninterrupted job's.
    sequence = dipeptide_split().training[0]
    rounds = ("dipeptides", "1", "0.004", "0.008")
    full = generate(*rounds, tmp_path=tmp_path / "full")
    assert full.returncode == 0, full.stderr
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    killed_data = tmp_path / "killed" / "data"
    job = subprocess.Popen(
        ["bash", str(GENERATE), "-o", str(killed_data), *rounds],
        env={**os.environ, "PATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    progress = killed_data / sequence / "00-extended" / "progress.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        if progress.is_file() and json.loads(progress.read_text())["frames"] >= 4:
            time.sleep(2)  # into the second round, most likely
            break
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert json.loads(progress.read_text())["frames"] in (4, 8)
    rerun = generate(*rounds, tmp_path=tmp_path / "killed")
    assert rerun.returncode == 0, rerun.stderr
    # progress.json holds the checkpoint's SHA-256 (positions, velocities, random state); the DCD
    # headers differ only in their creation time, so the frames are compared.
    full_run = tmp_path / "full" / "data" / sequence / "00-extended"
    killed_run = killed_data / sequence / "00-extended"
    expected = (full_run / "progress.json").read_bytes()
    assert (killed_run / "progress.json").read_bytes() == expected
    frames = [list_trajectories(run)[0].load() for run in (full_run, killed_run)]
    assert frames[0].shape[0] == 8 and np.array_equal(frames[0], frames[1])


@pytest.mark.parametrize("termini", ["zwitterionic", "capped"])
def test_dipeptides_of_all_20_residues_map_to_peptide_atom_types(termini):
    # Ten dipeptides that together hold every residue (histidine as built at pH 7).
    for sequence in ("AR", "ND", "CQ", "EG", "HI", "LK", "MF", "PS", "TW", "YV"):
        topology = build_peptide(sequence, termini).topology
        types = atom_types_for_topology(topology, TRANSFERABLE)
        names = [TRANSFERABLE.atom_types[code] for code in types]
        assert names == [atom.name for atom in topology.atoms()]


def non_peptide(residue_name: str, atom_name: str) -> app.Topology:
    """A dipeptide with one extra residue (solvent, ligand) of one atom."""
    topology = build_peptide("AG", "zwitterionic").topology
    chain = topology.addChain()
    residue = topology.addResidue(residue_name, chain)
    topology.addAtom(atom_name, app.element.oxygen, residue)
    return topology


def test_non_peptides_and_unknown_atoms_are_refused():
    for residue_name in ("HOH", "LIG"):
        with pytest.raises(ValueError, match=f"other residues: {residue_name}"):
            atom_types_for_topology(non_peptide(residue_name, "O"), TRANSFERABLE)
    topology = build_peptide("AG", "zwitterionic").topology
    next(topology.atoms()).name = "NX"
    with pytest.raises(ValueError, match="not in the vocabulary.*NX"):
        atom_types_for_topology(topology, TRANSFERABLE)
