"""How the pieces of a transformation combine: each test fails if the order or a step is lost.

These catch bugs that every recovery test let through (issue 22): a dense field left
unsmoothed, the linear and deformable stages composed in the wrong order, a series'
chain of fields composed in the wrong order, and free memory read in the wrong unit.
"""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from src_training.data.datasets import load_image_file
from src_training.engine import series as series_module
from src_training.engine.optimisation import Optimisation
from src_training.engine.registration import run_to_end
from src_training.metrics import build_metric
from src_training.optimisation import OptimiseConfig, optimise_pair
from src_training.optimisation.pyramid import Level
from src_training.optimisation.run import Run
from src_training.runtime import memory
from src_training.spatial.transforms import identity_grid, warp

ISBI = Path(__file__).resolve().parents[4] / "shared" / "data" / "isbi2012_em"
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def section() -> torch.Tensor:
    """A 64x64 crop of a real EM section, ``(1, 1, 64, 64)``, zero mean and unit sd."""
    image, _ = load_image_file(ISBI / "images" / "00.png")
    crop = torch.from_numpy(image[None, :, 220:284, 180:244].copy())
    return (crop - crop.mean()) / crop.std()


def _roughness(field: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring displacement vectors."""
    return float(sum(field.diff(dim=axis).abs().mean() for axis in range(2, field.dim())))


def test_a_dense_field_gets_smoother_as_its_smoothing_grows(section):
    """The Gaussian on the dense residual is what keeps it smooth: more of it, less roughness."""
    bump = 3.0 * torch.exp(-((identity_grid((64, 64)) - 32) ** 2).sum(0) / 300)[None, None]
    fixed = warp(section, torch.cat([bump, -bump], dim=1))
    roughness = []
    for sigma in (0.0, 1.0, 3.0):
        config = OptimiseConfig(
            transform="dense", smoothing=sigma, levels=1, iterations=40, lam=0.0, lr=0.5
        )
        result = optimise_pair(fixed, section, build_metric("mse"), config)
        roughness.append(_roughness(result.displacement))
    assert roughness[0] > 2 * roughness[1] > 4 * roughness[2], roughness


def _analytic(points: torch.Tensor, amplitude: float, phase: float) -> torch.Tensor:
    """A smooth displacement evaluated at any points ``(2, ...)``, non-commuting by phase."""
    y, x = points[0] / 48, points[1] / 48
    return amplitude * torch.stack(
        [torch.sin(2 * math.pi * (x + phase)), torch.cos(2 * math.pi * (y * x + phase))]
    )


def test_the_linear_stage_is_applied_after_the_deformation_as_a_plus_A_u(section):
    """``T(x) = A (u(x) + x - c) + c + t``: the returned displacement is ``T(x) - x``."""
    shape = (48, 48)
    image = section[..., :48, :48]
    level = Level(shape, image, image, None, None, None, None)
    run = Run([level], build_metric("mse"), OptimiseConfig(affine="affine"), None, "cpu")
    matrix = torch.tensor([[1.1, 0.2], [-0.15, 0.9]])
    shift = torch.tensor([0.1, -0.05])  # in half image sizes
    with torch.no_grad():
        run.linear.copy_((matrix - torch.eye(2)).flatten())
        run.shift.copy_(shift)
        grid = identity_grid(shape)
        u = _analytic(grid, 2.0, 0.1)[None]
        found = run.displacement(level, u, run.linear_part(level))
        wrong_order = run.displacement(level, None, run.linear_part(level))[0] + u[0]
    centre = torch.tensor([(n - 1) / 2 for n in shape]).view(2, 1, 1)
    translation = (shift * torch.tensor([(n - 1) / 2 for n in shape])).view(2, 1, 1)
    mapped = torch.einsum("ij,j...->i...", matrix, u[0] + grid - centre) + centre + translation
    torch.testing.assert_close(found[0], mapped - grid, rtol=0, atol=1e-4)
    assert float((wrong_order - (mapped - grid)).abs().max()) > 0.3  # the test can tell


def test_a_previous_chain_is_composed_onto_the_reference(monkeypatch):
    """Frame t's field to frame 0 follows a point from frame 0 through 1, 2, ..., t."""
    shape, n = (48, 48), 5
    grid = identity_grid(shape)
    phases = [0.0, 0.13, 0.41, 0.27, 0.72]
    steps = [_analytic(grid, 1.5, phases[t])[None] for t in range(n)]  # frame t onto t-1
    calls = iter(range(1, n))

    def step_field(optimisation, fixed, moving, **_):
        t = next(calls)
        yield from ()
        return SimpleNamespace(
            displacement=steps[t], iterations=1, initial_loss=1.0, loss=0.5, stopped=False
        )

    monkeypatch.setattr(series_module, "run_optimisation", step_field)
    frames = np.random.default_rng(0).random((n, 1, *shape), dtype=np.float32)
    optimisation = Optimisation(build_metric("mse"), OptimiseConfig(iterations=(1,)))
    result = run_to_end(
        series_module.register_stack(None, frames, "previous", optimisation=optimisation)
    )
    inner = (slice(None), slice(8, -8), slice(8, -8))
    for t in range(1, n):
        position = grid.clone()  # a point of frame 0, followed into frame 1, 2, ..., t
        for k in range(1, t + 1):
            position = position + _analytic(position, 1.5, phases[k])
        truth = position - grid
        error = (torch.from_numpy(result.fields[t]) - truth)[inner].norm(dim=0).mean()
        assert error < 0.05, (t, float(error))
    reverse = grid.clone()
    for k in range(n - 1, 0, -1):
        reverse = reverse + _analytic(reverse, 1.5, phases[k])
    assert float((reverse - position)[inner].norm(dim=0).mean()) > 0.5  # order matters here


def test_free_memory_is_read_from_meminfo_in_bytes(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       24576000 kB\nMemFree:         1000000 kB\n"
        "MemAvailable:   12345678 kB\nBuffers:          200000 kB\n"
    )
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory.available_memory("cpu") == 12345678 * 1024
    meminfo.write_text("MemTotal:       24576000 kB\n")  # an old kernel: nothing to check
    assert memory.available_memory("cpu") is None
