"""Regression tests of the bundled models: each, on its documented system with a fixed seed,
reaches its documented acceptance within a stated band, and the same file with the sign of its
logQRatio flipped does not.

Documented acceptances (docs/benchmarks.md): ``alanine-dipeptide`` 0.155 (``make demo``, 10,000
MH steps of examples/alanine-dipeptide.pdb, with the canonical labelling of equivalent atoms that
rejects the model's proposals of the other methyl handedness); ``dipeptides`` 0.269 on the
held-out dipeptide AS (zwitterionic); ``peptides`` 0.581 on AS too. The band is +-0.05 (+-0.04 for
``peptides``): about three times the spread of the acceptance over seeds for chains of this length
(measured: 0.144-0.156, 0.286-0.308 and 0.547-0.583), while a flipped ratio gives 0.000, 0.208 and
0.440-0.478. Most ``peptides`` proposals are local or rotor moves, whose acceptance a flipped ratio
barely changes, hence its narrower band. Contract shapes and "accepted > 0" would pass with random
weights or a flipped ratio; these would not.
"""

import json
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from helpers import sign_flipped_copy
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.cli import main as cli_main
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.models.contract import load_model, resolve_model_path
from openmm_timewarp.models.package import is_package
from openmm_timewarp.models.resolve import model_file_for_topology

EXAMPLE_PDB = Path(__file__).parents[1] / "examples" / "alanine-dipeptide.pdb"
BAND = 0.05
PEPTIDES_ACCEPTANCE = 0.581
PEPTIDES_BAND = 0.04
REFERENCE = openmm.Platform.getPlatformByName("Reference")


def acceptance(model, topology: app.Topology, positions, steps: int, seed: int) -> float:
    integrator = TimewarpIntegrator(model, 310, topology=topology, seed=seed)
    context = openmm.Context(create_system(topology), integrator, REFERENCE)
    context.setPositions(positions)
    integrator.step(steps)
    return integrator.getAcceptanceRate()


def alanine_dipeptide() -> tuple[app.Topology, list]:
    pdb = app.PDBFile(str(EXAMPLE_PDB))
    return pdb.topology, pdb.positions


def held_out_dipeptide() -> tuple[app.Topology, unit.Quantity]:
    """AS, zwitterionic, built and minimised (the held-out evaluation's protocol)."""
    modeller = build_peptide("AS", "zwitterionic")
    context = openmm.Context(
        create_system(modeller.topology), openmm.VerletIntegrator(0.001), REFERENCE
    )
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    return modeller.topology, context.getState(getPositions=True).getPositions(asNumpy=True)


@pytest.mark.parametrize("flipped", [False, True], ids=["bundled", "flipped ratio"])
def test_alanine_dipeptide_model_reaches_its_documented_acceptance(flipped, tmp_path):
    topology, positions = alanine_dipeptide()
    model = "alanine-dipeptide"
    if flipped:
        model = sign_flipped_copy(resolve_model_path(model), tmp_path / "f.pt")
    rate = acceptance(model, topology, positions, steps=3000, seed=1)
    assert (abs(rate - 0.155) <= BAND) != flipped, rate


@pytest.mark.slow
@pytest.mark.parametrize("flipped", [False, True], ids=["bundled", "flipped ratio"])
def test_dipeptides_model_reaches_its_documented_acceptance(flipped, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path / "cache"))
    topology, positions = held_out_dipeptide()
    model = model_file_for_topology("dipeptides", topology)
    if flipped:
        model = sign_flipped_copy(model, tmp_path / "f.pt")
    rate = acceptance(model, topology, positions, steps=3000, seed=1)
    assert (abs(rate - 0.269) <= BAND) != flipped, rate


@pytest.mark.slow
@pytest.mark.parametrize("flipped", [False, True], ids=["bundled", "flipped ratio"])
def test_peptides_model_reaches_its_documented_acceptance(flipped, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path / "cache"))
    topology, positions = held_out_dipeptide()
    model = model_file_for_topology("peptides", topology)
    if flipped:
        model = sign_flipped_copy(model, tmp_path / "f.pt")
    rate = acceptance(model, topology, positions, steps=3000, seed=1)
    assert (abs(rate - PEPTIDES_ACCEPTANCE) <= PEPTIDES_BAND) != flipped, rate


@pytest.mark.slow
def test_compiled_peptides_proposal_is_cached_and_reaches_the_same_acceptance(
    tmp_path, monkeypatch
):
    """``compiled=True``: an AOTInductor package, built once per molecule (the second request is
    served from the cache), proposing what the TorchScript proposal proposes, so the chain reaches
    the documented acceptance of the ``peptides`` model."""
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path / "cache"))
    topology, positions = held_out_dipeptide()
    package = model_file_for_topology("peptides", topology, compiled=True)
    assert is_package(package) and package.suffix == ".pt2"
    built = package.stat().st_mtime_ns
    assert model_file_for_topology("peptides", topology, compiled=True) == package
    assert package.stat().st_mtime_ns == built
    script = model_file_for_topology("peptides", topology)
    assert script != package and not is_package(script)
    x = torch.tensor(positions.value_in_unit(unit.nanometer), dtype=torch.float32)
    types = torch.arange(topology.getNumAtoms())
    noise = torch.randn(8, topology.getNumAtoms(), 3, generator=torch.Generator().manual_seed(0))
    (compiled_model, _), (script_model, _) = load_model(package), load_model(script)
    for a, b in zip(compiled_model(x, types, noise), script_model(x, types, noise), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    integrator = TimewarpIntegrator("peptides", 310, topology=topology, seed=1, compiled=True)
    context = openmm.Context(create_system(topology), integrator, REFERENCE)
    context.setPositions(positions)
    integrator.step(3000)
    assert abs(integrator.getAcceptanceRate() - PEPTIDES_ACCEPTANCE) <= PEPTIDES_BAND
    # `timewarp sample --compiled`: served from the cache, the same chains as TorchScript's.
    acceptances = {}
    for flags in ([], ["--compiled"]):
        output = tmp_path / f"chains{len(flags)}"
        arguments = ["sample", "peptides", "AS", "--termini", "zwitterionic", "--steps", "1000"]
        arguments += ["--chains-per-peptide", "2", "--no-progress", "-o", str(output), *flags]
        assert cli_main(arguments) == 0
        records = [
            json.loads(path.read_text()) for path in sorted(output.glob("*/statistics.json"))
        ]
        assert len(records) == 2
        assert {Path(record["model"]).suffix for record in records} == {".pt2" if flags else ".pt"}
        acceptances[bool(flags)] = [record["accepted"] / record["proposals"] for record in records]
    assert package.stat().st_mtime_ns == built
    assert np.allclose(acceptances[True], acceptances[False], atol=0.02), acceptances


def test_a_failed_compile_falls_back_to_torchscript_with_a_warning(tmp_path, monkeypatch):
    from openmm_timewarp.models import resolve

    def no_compiler(*args) -> None:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(resolve, "_compile", no_compiler)
    topology, _ = alanine_dipeptide()
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*TorchScript"):
        path = model_file_for_topology("peptides", topology, compiled=True)
    assert path == model_file_for_topology("peptides", topology) and not is_package(path)
