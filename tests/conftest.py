"""Shared set-up: one torch thread, so tests behave the same on a shared CPU."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)
