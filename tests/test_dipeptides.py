"""The dipeptide training / held-out split (complete, disjoint, reproducible, committed) and the
residue-independent atom types of transferable models."""

import pytest
from openmm import app

from openmm_timewarp.cli import main
from openmm_timewarp.data.dipeptides import (
    SPLIT_FILE,
    all_dipeptides,
    dipeptide_split,
    load_split,
    peptide_atom_vocabulary,
    write_split,
)
from openmm_timewarp.data.peptides import ONE_TO_THREE, build_peptide
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


def test_all_dipeptides_are_the_400_pairs_of_the_20_residues():
    sequences = all_dipeptides()
    assert len(sequences) == len(set(sequences)) == 400
    assert {letter for sequence in sequences for letter in sequence} == set(ONE_TO_THREE)
    assert all(len(sequence) == 2 for sequence in sequences)


def test_split_is_disjoint_complete_and_at_most_half_for_training():
    split = dipeptide_split()
    training, held_out = set(split.training), set(split.held_out)
    assert len(training) == len(split.training) <= 200
    assert not training & held_out
    assert training | held_out == set(all_dipeptides())
    assert list(split.held_out) == sorted(split.held_out)


def test_split_is_reproducible_and_depends_on_the_seed():
    assert dipeptide_split() == dipeptide_split()
    assert dipeptide_split(seed=1).training != dipeptide_split().training


def test_committed_file_is_the_functions_output():
    assert SPLIT_FILE.is_file()
    assert load_split() == dipeptide_split()


def test_round_trip_and_bad_input(tmp_path, capsys):
    path = tmp_path / "split.json"
    write_split(dipeptide_split(seed=5, num_training=10), path)
    assert load_split(path) == dipeptide_split(seed=5, num_training=10)
    with pytest.raises(ValueError, match="at most half"):
        dipeptide_split(num_training=201)
    path.write_text("{")
    with pytest.raises(ValueError, match="--write"):
        load_split(path)
    assert main(["dipeptides", "--list", "train", "--start", "2", "--count", "3"]) == 0
    assert capsys.readouterr().out.split() == list(dipeptide_split().training[2:5])


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
