"""Shared fixtures."""

import importlib
import pkgutil

import pytest
import torch


@pytest.fixture
def single_thread():
    """Run torch on one thread: small training runs are then fast even on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def served(tmp_path):
    """``tmp_path`` served over HTTP on 127.0.0.1: its base URL and the paths requested."""
    from ctc_layout import http_server

    with http_server(tmp_path) as server:
        yield server


@pytest.fixture
def errors(monkeypatch):
    """Collect the error notifications of every plugin module instead of showing them."""
    import napari_deepsim

    shown: list[str] = []
    for info in pkgutil.walk_packages(napari_deepsim.__path__, "napari_deepsim."):
        module = importlib.import_module(info.name)
        if hasattr(module, "show_error"):
            monkeypatch.setattr(module, "show_error", shown.append)
    return shown
