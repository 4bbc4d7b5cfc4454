"""Shared set-up: one torch thread, so tests behave the same on a shared CPU, and one short MD
reference of capped alanine that every evaluation test reads."""

import pytest
import torch
from helpers import SHORT_REFERENCE

from openmm_timewarp.evaluation import md_reference
from openmm_timewarp.evaluation.settings import BenchmarkSettings


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    """Capped alanine's short reference (:data:`SHORT_REFERENCE`), generated once per session."""
    cache = tmp_path_factory.mktemp("reference-cache")
    settings = BenchmarkSettings(**SHORT_REFERENCE)
    return md_reference.generate_reference("A", "capped", cache, settings)
