"""The chain on the CUDA platform with the model on the Context's GPU (skipped without CUDA).

Energies in mixed precision: the MH test is exact only to the precision of the energies that it
compares, and the platform's default (single) sums them in float32.
"""

import numpy as np
import openmm
import pytest
import torch
from helpers import tethered_particles

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal

PLATFORMS = [
    openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
]
pytestmark = pytest.mark.skipif(
    "CUDA" not in PLATFORMS or not torch.cuda.is_available(),
    reason="needs OpenMM's CUDA platform and torch with CUDA",
)
TETRAHEDRON = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]])


@pytest.mark.parametrize("model_device", ["auto", "cpu"])
def test_chain_runs_on_cuda(tmp_path, model_device):
    model = export_simple_proposal(GaussianRandomWalk(0.05), tmp_path / "walk.pt", tau_ps=2.0)
    integrator = TimewarpIntegrator(
        model, 300, atom_types=[0] * 4, seed=3, model_device=model_device
    )
    platform = openmm.Platform.getPlatformByName("CUDA")
    context = openmm.Context(tethered_particles(), integrator, platform, {"Precision": "mixed"})
    context.setPositions(TETRAHEDRON)
    integrator.step(500)
    assert 0 < integrator.getNumAccepted() < 500
    assert integrator.getNumRejectedNonFinite() == 0
    assert integrator.getModelSeconds() > 0
    positions = context.getState(getPositions=True).getPositions(asNumpy=True)._value
    assert np.isfinite(positions).all()
