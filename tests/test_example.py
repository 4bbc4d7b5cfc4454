"""The main example, examples/alanine_dipeptide.py, and the bundled model it runs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from openmm import app, unit

from openmm_timewarp.data.peptides import FORCEFIELD_NAME
from openmm_timewarp.models.contract import (
    atom_types_for_topology,
    bundled_models,
    check_contract,
    load_model,
)
from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal

EXAMPLE = Path(__file__).parents[1] / "examples" / "alanine_dipeptide.py"


def load_example():
    spec = importlib.util.spec_from_file_location("alanine_dipeptide_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_prints_acceptance_and_writes_the_plot(tmp_path, capsys):
    model = export_simple_proposal(
        GaussianRandomWalk(sigma=0.0005),  # nm: moves of about 1 kT, so many are accepted
        tmp_path / "walk.pt",
        num_atoms=22,
        temperature_K=310.0,
        atom_types=("C", "H", "N", "O"),
    )
    output = tmp_path / "demo"
    arguments = ["--steps", "200", "--model", str(model), "--output", str(output)]
    assert load_example().main(arguments) == 0
    printed = capsys.readouterr().out
    acceptance = float(re.search(r"acceptance rate: ([0-9.]+)", printed).group(1))
    assert 0.0 < acceptance <= 1.0
    assert re.search(r"speed: [0-9.]+ steps/s", printed)
    assert re.search(r"phi > 0 fraction: [0-9.]+ \(of 200 frames\)", printed)
    plot = output / "ramachandran.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Ramachandran plot: {plot}" in printed


def test_example_refuses_a_missing_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example().parse_args(["--model", str(tmp_path / "missing.pt")])
    assert exit_info.value.code == 2
    assert "Train one with `timewarp train`" in capsys.readouterr().err


@pytest.mark.skipif(
    "alanine-dipeptide" not in bundled_models(), reason="the bundled model is not trained yet"
)
def test_bundled_model_matches_the_example_system():
    module, metadata = load_model("alanine-dipeptide")
    pdb = app.PDBFile(str(EXAMPLE.with_name("alanine-dipeptide.pdb")))
    assert metadata.temperature_K == 310.0 and metadata.forcefield == FORCEFIELD_NAME
    assert metadata.num_atoms == pdb.topology.getNumAtoms() == 22
    types = torch.from_numpy(atom_types_for_topology(pdb.topology, metadata))
    positions = np.array(pdb.positions.value_in_unit(unit.nanometer), dtype=np.float32)
    check_contract(module, torch.from_numpy(positions), types)
