"""The proposal-model file format: export, load, metadata and topology helpers."""

import numpy as np
import pytest
import torch
from openmm import app

from openmm_timewarp.models.contract import (
    ModelMetadata,
    atom_types_for_topology,
    check_contract,
    chiral_centres,
    export,
    load_metadata,
    load_model,
    resolve_model_path,
)


class RandomWalk(torch.nn.Module):
    """Symmetric Gaussian random walk: logQRatio is exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim = 3

    def forward(self, positions, atom_types, noise):
        proposals = positions.unsqueeze(0) + 0.01 * noise
        return proposals, torch.zeros(noise.shape[0])


class WrongShape(RandomWalk):
    def forward(self, positions, atom_types, noise):
        return positions.unsqueeze(0) + 0.01 * noise, torch.zeros(noise.shape[0], 2)


def metadata(**changes) -> ModelMetadata:
    fields = dict(
        name="walk",
        family="simple",
        tau_ps=0.5,
        temperature_K=310.0,
        forcefield="any",
        atom_type_scheme="element",
        atom_types=["H", "C", "N", "O"],
    )
    fields.update(changes)
    return ModelMetadata(**fields)


def dipeptide_topology() -> app.Topology:
    topology = app.Topology()
    chain = topology.addChain()
    for name, atoms in (("ACE", ["CH3", "C", "O"]), ("ALA", ["N", "CA", "C", "O", "CB"])):
        residue = topology.addResidue(name, chain)
        for atom in atoms:
            topology.addAtom(atom, app.Element.getBySymbol(atom[0]), residue)
    return topology


def test_export_round_trip(tmp_path):
    path = export(RandomWalk(), tmp_path / "walk.pt", metadata(training={"steps": 3}))
    module, loaded = load_model(path)
    assert loaded == metadata(training={"steps": 3})
    assert (module.noise_dim, module.tau, module.num_atoms, module.num_atom_types) == (3, 0.5, 0, 4)
    positions = torch.zeros(5, 3)
    noise = torch.ones(2, 5, 3)
    proposals, ratio = module(positions, torch.zeros(5, dtype=torch.int64), noise)
    torch.testing.assert_close(proposals, RandomWalk()(positions, None, noise)[0])
    assert ratio.tolist() == [0.0, 0.0]


def test_export_refuses_broken_models(tmp_path):
    with pytest.raises(ValueError, match="logQRatio must be float32 of shape"):
        export(WrongShape(), tmp_path / "bad.pt", metadata())
    no_noise_dim = torch.nn.Identity()
    with pytest.raises(ValueError, match="noise_dim"):
        export(no_noise_dim, tmp_path / "bad.pt", metadata())
    with pytest.raises(ValueError, match="does not exist"):
        export(RandomWalk(), tmp_path / "missing" / "walk.pt", metadata())


def test_check_contract_names_missing_attribute():
    scripted = torch.jit.script(RandomWalk())
    with pytest.raises(ValueError, match="tau"):
        check_contract(scripted, torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"family": "magic"}, "unknown model family"),
        ({"atom_type_scheme": "mass"}, "unknown atom-type scheme"),
        ({"tau_ps": 0.0}, "tau_ps"),
        ({"temperature_K": -1.0}, "temperature_K"),
        ({"atom_types": ["H", "H"]}, "distinct"),
        ({"format_version": 99}, "re-export"),
    ],
)
def test_metadata_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        metadata(**changes)


def test_unknown_models_and_files(tmp_path):
    with pytest.raises(ValueError, match="not a bundled model"):
        resolve_model_path("no-such-model")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a TorchScript"):
        load_metadata(garbage)
    with pytest.raises(ValueError, match="malformed"):
        ModelMetadata.from_json("{not json")


def test_atom_types_from_topology():
    topology = dipeptide_topology()
    codes = atom_types_for_topology(topology, metadata())
    assert codes.tolist() == [1, 1, 3, 2, 1, 1, 3, 1]
    labels = [f"{a.residue.index}:{a.residue.name}:{a.name}" for a in topology.atoms()]
    per_atom = metadata(atom_type_scheme="residue-atom", atom_types=labels[::-1], num_atoms=8)
    np.testing.assert_array_equal(atom_types_for_topology(topology, per_atom), np.arange(8)[::-1])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        atom_types_for_topology(topology, metadata(atom_types=["H", "C", "O"]))
    with pytest.raises(ValueError, match="is for 9 atoms"):
        atom_types_for_topology(topology, metadata(num_atoms=9))


def test_metadata_for_molecule_types_every_atom_of_it():
    topology = dipeptide_topology()
    common = dict(name="m", family="simple", tau_ps=1.0, temperature_K=300.0, forcefield="ff")
    per_atom = ModelMetadata.for_molecule(topology, **common)
    assert per_atom.atom_type_scheme == "residue-atom" and per_atom.num_atoms == 8
    np.testing.assert_array_equal(atom_types_for_topology(topology, per_atom), np.arange(8))
    # A proposal's labels give the same metadata as the Topology they came from.
    assert ModelMetadata.for_molecule(per_atom.atom_types, **common) == per_atom
    elements = ModelMetadata.for_molecule(topology, atom_type_scheme="element", **common)
    symbols = [atom.element.symbol for atom in topology.atoms()]
    assert elements.atom_types == sorted(set(symbols)) and elements.num_atoms == 8
    codes = atom_types_for_topology(topology, elements)
    assert [elements.atom_types[code] for code in codes] == symbols
    with pytest.raises(ValueError, match="needs the molecule's Topology"):
        ModelMetadata.for_molecule(per_atom.atom_types, atom_type_scheme="element", **common)
    with pytest.raises(ValueError, match="no 'peptide-atom' vocabulary"):
        ModelMetadata.for_molecule(topology, atom_type_scheme="peptide-atom", **common)


def test_chiral_centres_are_ca_n_c_cb():
    assert chiral_centres(dipeptide_topology()) == [(4, 3, 5, 7)]
