"""The compiled model format: AOTInductor packages written by ``export_compiled``.

A package must sample exactly through TimewarpIntegrator (the analytic cases of
tests/helpers.py, within TOLERANCE standard errors), and the control with a flipped logQRatio
must fail the same comparison; it must compute what its TorchScript twin computes, survive XML
serialization, and be refused when its metadata no longer match its checksum.  Compiling a
Gaussian proposal takes about 15 s on a busy 2-core machine, hence the slow mark.
"""

import json
import zipfile

import numpy as np
import openmm
import pytest
import torch
from helpers import (
    DOUBLE_WELL_PROPOSALS,
    DOUBLE_WELL_START,
    HARMONIC_CENTRES,
    HARMONIC_PROPOSALS,
    TEMPERATURE,
    SignFlipped,
    compare,
    double_well_observables,
    double_well_system,
    harmonic_observables,
    harmonic_system,
)
from test_ic_proposals import make_models, positions_of, reordered
from test_integrator_sampling import run_chain

from openmm_timewarp import TimewarpIntegrator, export, load_metadata, load_model
from openmm_timewarp.data.peptides import FORCEFIELD_NAME, build_peptide
from openmm_timewarp.models.compiled import export_compiled, export_program
from openmm_timewarp.models.contract import ModelMetadata, atom_types_for_topology
from openmm_timewarp.models.package import is_package
from openmm_timewarp.proposals.ic.families import proposal_metadata

pytestmark = pytest.mark.slow


def simple_metadata(num_atoms: int | None) -> ModelMetadata:
    return ModelMetadata(
        name="compiled test",
        family="simple",
        tau_ps=1.0,
        temperature_K=TEMPERATURE,
        forcefield="any",
        atom_type_scheme="element",
        atom_types=["X"],
        num_atoms=num_atoms,
    )


def export_both(proposal: torch.nn.Module, folder, num_atoms: int | None):
    """The proposal as a package and as its TorchScript twin."""
    example = None if num_atoms else torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    metadata = simple_metadata(num_atoms)
    package = export_compiled(proposal, folder / "m.pt2", metadata, example)
    return package, export(proposal, folder / "m.pt", metadata, example)


@pytest.fixture(scope="module")
def independent_gaussian(tmp_path_factory):
    return export_both(
        HARMONIC_PROPOSALS["independent Gaussian"](), tmp_path_factory.mktemp("i"), 2
    )


@pytest.fixture(scope="module")
def drifted_walk(tmp_path_factory):
    return export_both(DOUBLE_WELL_PROPOSALS["drifted walk"](), tmp_path_factory.mktemp("d"), None)


def test_harmonic_array_is_sampled_exactly_by_a_package(independent_gaussian):
    package, _ = independent_gaussian
    assert is_package(package)
    samples = run_chain(harmonic_system(), package, HARMONIC_CENTRES, seed=11)
    assert compare(harmonic_observables(samples)) == []


def test_double_well_is_sampled_exactly_by_a_package_for_any_atom_count(drifted_walk):
    package, _ = drifted_walk
    samples = run_chain(double_well_system(), package, DOUBLE_WELL_START, seed=12)
    assert compare(double_well_observables(samples)) == []


def test_a_package_with_a_flipped_log_q_ratio_fails_the_check(tmp_path):
    proposal = SignFlipped(HARMONIC_PROPOSALS["independent Gaussian"]())
    package = export_compiled(proposal, tmp_path / "flipped.pt2", simple_metadata(2))
    samples = run_chain(harmonic_system(), package, HARMONIC_CENTRES, seed=11)
    assert compare(harmonic_observables(samples)) != []


@pytest.mark.parametrize("fixture", ["independent_gaussian", "drifted_walk"])
def test_a_package_computes_what_its_torchscript_twin_computes(fixture, request):
    package, script = request.getfixturevalue(fixture)
    compiled, compiled_metadata = load_model(package)
    scripted, script_metadata = load_model(script)
    assert compiled_metadata == script_metadata
    for name in ("noise_dim", "tau", "num_atoms", "num_atom_types", "independent"):
        assert getattr(compiled, name) == getattr(scripted, name)
    generator = torch.Generator().manual_seed(3)
    for num_atoms, batch in ((2, 1), (2, 300)):
        positions = torch.randn(num_atoms, 3, generator=generator) * 0.1
        types = torch.zeros(num_atoms, dtype=torch.int64)
        noise = torch.randn(batch, num_atoms, 3, generator=generator)
        with torch.no_grad():
            for actual, expected in zip(
                compiled(positions, types, noise), scripted(positions, types, noise), strict=True
            ):
                torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)
    positions = torch.randn(3, 2, 3, generator=generator) * 0.1
    noise = torch.randn(3, 4, 2, 3, generator=generator)
    with torch.no_grad():
        for actual, expected in zip(
            compiled.forward_chains(positions, types, noise),
            scripted.forward_chains(positions, types, noise),
            strict=True,
        ):
            torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_the_plugin_runs_a_package_like_its_twin_and_serializes_it(drifted_walk):
    """Same seed, same chain in both formats (to float32 rounding of the proposals), and an
    integrator restored from XML continues with the embedded package."""
    trajectories = []
    for path in drifted_walk:
        integrator = TimewarpIntegrator(path, TEMPERATURE, atom_types=[0], seed=5)
        context = openmm.Context(
            double_well_system(), integrator, openmm.Platform.getPlatformByName("Reference")
        )
        context.setPositions(DOUBLE_WELL_START)
        integrator.step(500)
        trajectories.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
        assert integrator.getNumAccepted() > 0
    np.testing.assert_allclose(trajectories[0], trajectories[1], atol=1e-5)
    restored = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(integrator))
    context = openmm.Context(
        double_well_system(), restored, openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(DOUBLE_WELL_START)
    restored.step(100)
    assert TimewarpIntegrator.cast(restored).getNumAccepted() > 0


def test_a_package_whose_metadata_were_altered_is_refused(independent_gaussian, tmp_path):
    package, _ = independent_gaussian
    altered = tmp_path / "altered.pt2"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(altered, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("_metadata.json"):
                entries = json.loads(data)
                entries["tau"] = "1000.0"
                data = json.dumps(entries).encode()
            target.writestr(info, data)
    with pytest.raises(ValueError, match="does not match the checksum"):
        load_metadata(altered)
    with pytest.raises(ValueError, match="does not match the checksum"):
        TimewarpIntegrator(altered, TEMPERATURE, atom_types=[0, 0])


def test_internal_coordinate_proposals_export_with_their_atom_type_checks_as_assertions():
    """torch.export cannot branch on data: the atom-type checks that TorchScript runs as Python
    branches become assertions of the traced (and so of the compiled) code.  The traced program
    is checked here; compiling it takes 1.5-4 min for the bundled model (bench/compiled_model.py
    compiles and compares the alanine-dipeptide and transferable models)."""
    modeller = build_peptide("A")
    model = make_models(modeller)["independent"]
    metadata = proposal_metadata(model, "ala2-test", 10.0, 310.0, FORCEFIELD_NAME)
    x = positions_of(modeller).float()
    traced = export_program(model, metadata, x).program.module()
    topology, old_index = reordered(modeller.topology)
    types = torch.from_numpy(atom_types_for_topology(topology, metadata))
    noise = torch.randn(5, x.shape[0], 3, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = model(x[old_index], types, noise)
        actual = traced(x[old_index], types, noise)
        for a, b in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        duplicated = types.clone()
        duplicated[3] = duplicated[4]
        with pytest.raises(RuntimeError, match="exactly once"):
            traced(x[old_index], duplicated, noise)
