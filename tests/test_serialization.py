"""XML serialization carries the proposal model: fresh processes, other paths, altered files.

Each check runs in a fresh Python process, as a user who loads an XML written elsewhere would.
"""

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import openmm
import pytest
from helpers import tethered_particles

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal

TETRAHEDRON = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]])

# Steps the deserialized integrator on a tethered tetrahedron; prints the final positions.
STEP_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import openmm
    {imports}
    xml = open(sys.argv[1]).read()
    integrator = openmm.XmlSerializer.deserialize(xml)
    system = openmm.System()
    force = openmm.CustomExternalForce("10*(x^2+y^2+z^2)")
    for _ in range(4):
        force.addParticle(system.addParticle(12.0), [])
    system.addForce(force)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.array({positions}))
    integrator.step(100)
    positions = context.getState(getPositions=True).getPositions(asNumpy=True)._value
    print(repr(positions.tolist()))
    """
)


def run_script(xml_path, imports: str) -> subprocess.CompletedProcess:
    script = STEP_SCRIPT.format(imports=imports, positions=TETRAHEDRON.tolist())
    return subprocess.run(
        [sys.executable, "-c", script, str(xml_path)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture()
def serialized(tmp_path):
    """An integrator's XML whose model file has since moved away, and the positions that 100
    steps of the original integrator reach."""
    model = export_simple_proposal(GaussianRandomWalk(0.05), tmp_path / "walk.pt", tau_ps=2.0)
    integrator = TimewarpIntegrator(model, 300, atom_types=[0] * 4, seed=17)
    xml_path = tmp_path / "integrator.xml"
    xml_path.write_text(openmm.XmlSerializer.serialize(integrator))
    shutil.move(model, tmp_path / "elsewhere.pt")
    context = openmm.Context(
        tethered_particles(), integrator, openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(TETRAHEDRON)
    integrator.step(100)
    return xml_path, context.getState(getPositions=True).getPositions(asNumpy=True)._value


def test_deserializes_in_a_fresh_process_without_the_model_file(serialized):
    xml_path, expected = serialized
    result = run_script(xml_path, "import openmm_timewarp")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.array(eval(result.stdout)), expected)


def test_the_error_without_the_plugin_says_what_to_import(serialized):
    xml_path, _ = serialized
    result = run_script(xml_path, "")
    assert result.returncode != 0
    assert "import openmm_timewarp" in result.stderr


@pytest.mark.parametrize("alteration", ["model bytes", "recorded checksum"])
def test_refuses_an_altered_model(serialized, alteration):
    xml_path, _ = serialized
    xml = xml_path.read_text()
    if alteration == "model bytes":
        start = xml.index('model="') + len('model="') + 400
        replacement = "A" if xml[start] != "A" else "B"
        xml = xml[:start] + replacement + xml[start + 1 :]
    else:
        start = xml.index('modelSha1="') + len('modelSha1="')
        xml = xml[:start] + ("0" if xml[start] != "0" else "1") + xml[start + 1 :]
    xml_path.write_text(xml)
    result = run_script(xml_path, "import openmm_timewarp")
    assert result.returncode != 0
    assert "altered or damaged" in result.stderr
