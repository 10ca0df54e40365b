"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def single_thread():
    """Run torch on one thread: small training runs are then fast even on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
