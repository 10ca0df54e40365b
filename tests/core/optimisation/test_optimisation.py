"""Per-pair instance optimisation: known transformations recovered, stopping, masks, errors."""

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from src_training.data.datasets import load_image_file
from src_training.engine.optimisation import optimisation_config
from src_training.metrics import METRICS, MetricInputs, build_metric
from src_training.networks.models import FeatureExtractor
from src_training.optimisation import OptimiseConfig, OptimiseEvent, optimise, optimise_pair
from src_training.optimisation.config import DEFAULT_LAMBDA, REFINE_ITERATIONS, REFINE_LAM_SCALE
from src_training.optimisation.fields import bspline_field, control_shape, gaussian_smooth
from src_training.spatial.transforms import affine_displacement, identity_grid, warp

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
ISBI = DATA / "isbi2012_em"
MARGIN = 12  # interior: voxels this far from every edge


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


def _texture(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A smooth random texture with structure at a few scales, ``(1, 1, *shape)``."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 1, *shape, generator=generator)
    image = gaussian_smooth(noise, 1.5) + 0.5 * gaussian_smooth(noise, 4.0)
    return (image - image.mean()) / image.std()


@pytest.fixture(scope="module")
def image2d() -> torch.Tensor:
    """A 128x128 crop of a real EM section, or a synthetic texture without the data."""
    if ISBI.is_dir():
        image, _ = load_image_file(ISBI / "images" / "00.png")
        return torch.from_numpy(image[None, :, 200:328, 160:288].copy())
    return _texture((128, 128))


def _smooth_field(shape: tuple[int, ...], amplitude: float) -> torch.Tensor:
    """A smooth analytic displacement, ``(1, ndim, *shape)``, at most ``amplitude`` voxels."""
    grid = identity_grid(shape)
    ndim = len(shape)
    channels = []
    for axis in range(ndim):
        other = grid[(axis + 1) % ndim] / shape[(axis + 1) % ndim]
        along = grid[axis] / shape[axis]
        channels.append(amplitude * torch.sin(2 * math.pi * (other + 0.3 * axis)) * along)
    return torch.stack(channels)[None]


def _interior_error(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean endpoint error in voxels away from the edges."""
    inner = (slice(MARGIN, -MARGIN),) * (found.dim() - 2)
    return float(torch.linalg.vector_norm(found - truth, dim=1)[0][inner].mean())


FAST = OptimiseConfig(levels=3, iterations=(60, 60, 40), lam=0.05, grid_spacing=6)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"diffeomorphic": True},
        {"transform": "dense", "smoothing": 2.0, "lr": 0.25},
        {"transform": "dense", "smoothing": 2.0, "lr": 0.25, "diffeomorphic": True},
    ],
)
def test_recovers_a_smooth_deformation_2d(image2d, options):
    truth = _smooth_field(tuple(image2d.shape[2:]), 3.0)
    fixed = warp(image2d, truth)
    result = optimise_pair(fixed, image2d, build_metric("mse"), replace(FAST, **options))
    assert result.displacement.shape == truth.shape
    assert result.displacement.dtype == torch.float32
    assert _interior_error(result.displacement, truth) < 0.5
    assert result.loss < 0.2 * result.initial_loss


def test_recovers_a_smooth_deformation_3d():
    moving = _texture((32, 32, 32), seed=1)
    truth = _smooth_field((32, 32, 32), 2.0)
    fixed = warp(moving, truth)
    config = OptimiseConfig(levels=2, iterations=(40, 40), lam=0.05, grid_spacing=4)
    result = optimise_pair(fixed, moving, build_metric("mse"), config)
    assert _interior_error(result.displacement, truth) < 0.5


@pytest.mark.parametrize("kind", ["affine", "rigid"])
def test_recovers_a_known_affine(image2d, kind):
    shape = tuple(image2d.shape[2:])
    angle = math.radians(6.0)
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    matrix = rotation @ torch.diag(torch.tensor([1.05, 0.97])) if kind == "affine" else rotation
    translation = torch.tensor([3.0, -2.0])
    truth = affine_displacement(matrix, translation, shape)
    fixed = warp(image2d, truth)
    config = OptimiseConfig(transform="none", affine=kind, levels=3)
    result = optimise_pair(fixed, image2d, build_metric("ncc"), config)
    assert _interior_error(result.displacement, truth) < 0.5
    centre = torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64)
    expected = torch.eye(3, dtype=torch.float64)
    expected[:2, :2] = matrix.double()
    expected[:2, 2] = centre + translation.double() - matrix.double() @ centre
    torch.testing.assert_close(result.affine, expected, atol=0.3, rtol=0.02)


def test_affine_and_deformation_compose(image2d):
    shape = tuple(image2d.shape[2:])
    truth = affine_displacement(torch.eye(2), torch.tensor([4.0, 2.5]), shape)
    fixed = warp(image2d, truth)
    config = OptimiseConfig(affine="rigid", levels=3, iterations=20, affine_iterations=100)
    result = optimise_pair(fixed, image2d, build_metric("ncc"), config)
    assert _interior_error(result.displacement, truth) < 0.5
    assert result.affine is not None and result.affine.shape == (3, 3)


def test_the_linear_stage_runs_on_the_coarse_levels_before_a_deformation(image2d):
    shape = tuple(image2d.shape[2:])
    fixed = warp(image2d, affine_displacement(torch.eye(2), torch.tensor([3.0, -2.0]), shape))
    seen = {}
    for transform in ("bspline", "none"):
        config = OptimiseConfig(
            transform=transform, affine="rigid", levels=4, iterations=3, affine_iterations=3
        )
        events = list(optimise(fixed, image2d, build_metric("ncc"), config))
        seen[transform] = sorted({e.level for e in events if e.stage == "affine"})
        assert config.linear_levels(4) == len(seen[transform])
    assert seen == {"bspline": [0, 1], "none": [0, 1, 2, 3]}  # alone, it needs every level
    assert OptimiseConfig(affine="rigid").linear_levels(1) == 1  # never none
    assert OptimiseConfig().linear_levels(4) == 0


def test_never_ends_worse_than_it_started(image2d):
    other = _texture(tuple(image2d.shape[2:]), seed=3)
    wild = OptimiseConfig(levels=2, iterations=10, lr=50.0, lam=10.0, patience=20)
    result = optimise_pair(image2d, other, build_metric("ncc"), wild)
    assert result.loss <= result.initial_loss


def test_refining_a_perfect_field_stays_put(image2d):
    truth = _smooth_field(tuple(image2d.shape[2:]), 3.0)
    fixed = warp(image2d, truth)
    config = OptimiseConfig(levels=2, iterations=20, lam=0.05)
    result = optimise_pair(fixed, image2d, build_metric("mse"), config, init=truth)
    assert _interior_error(result.displacement, truth) < 0.05
    assert result.loss <= result.initial_loss


def test_events_and_stop_within_one_iteration(image2d):
    events: list[OptimiseEvent] = []
    run = optimise(
        image2d, image2d.roll(2, 3), build_metric("ncc"), FAST, stop=lambda: len(events) >= 3
    )
    try:
        while True:
            events.append(next(run))
    except StopIteration as done:
        result = done.value
    assert len(events) == 3 and result.iterations == 3 and result.stopped
    assert [e.iteration for e in events] == [1, 2, 3]
    assert events[0].stage == "deformable" and events[0].level == 0
    assert set(events[0].terms) == {"similarity", "regularisation"}
    assert all(b.seconds >= a.seconds for a, b in itertools.pairwise(events))
    assert result.loss <= result.initial_loss
    assert torch.isfinite(result.displacement).all()


def test_same_seed_same_result(image2d):
    fixed = warp(image2d, _smooth_field(tuple(image2d.shape[2:]), 2.0))
    config = OptimiseConfig(levels=2, iterations=15, affine="affine", affine_iterations=5)
    first = optimise_pair(fixed, image2d, build_metric("ncc"), config)
    second = optimise_pair(fixed, image2d, build_metric("ncc"), config)
    assert torch.equal(first.displacement, second.displacement)
    assert torch.equal(first.affine, second.affine)


def test_mask_restricts_the_similarity(image2d):
    shape = tuple(image2d.shape[2:])
    grid = identity_grid(shape)
    bump = torch.exp(-((grid[0] - 64) ** 2 + (grid[1] - 32) ** 2) / (2 * 12.0**2))
    truth = torch.stack([3.0 * bump, 2.0 * bump])[None]  # moves the left half only
    fixed = warp(image2d, truth)
    right = torch.zeros(shape, dtype=torch.bool)
    right[:, 72:] = True
    config = OptimiseConfig(levels=2, iterations=40, lam=0.05)
    metric = build_metric("ncc")
    unmasked = optimise_pair(fixed, image2d, metric, config).displacement
    masked = optimise_pair(fixed, image2d, metric, config, mask=right).displacement
    region = bump > 0.5
    moved = torch.linalg.vector_norm(unmasked[0], dim=0)[region].mean()
    kept = torch.linalg.vector_norm(masked[0], dim=0)[region].mean()
    assert moved > 2.0 and kept < 0.2


def test_supervised_metric_uses_the_labels(image2d):
    labels = (image2d > image2d.median()).long()
    shifted = labels.roll(2, 2)
    config = OptimiseConfig(levels=2, iterations=5)
    with pytest.raises(ValueError, match="labels"):
        optimise(image2d, image2d.roll(2, 2), build_metric("ncc-sup"), config)
    metric = build_metric("ncc-sup")
    result = optimise_pair(image2d, image2d.roll(2, 2), metric, config, labels=(shifted, labels))
    assert result.loss < result.initial_loss
    unlabelled = optimise_pair(image2d, image2d.roll(2, 2), build_metric("ncc"), config)
    assert result.initial_loss > unlabelled.initial_loss + 0.05  # the label term counts


def test_deepsim_takes_the_built_metric():
    torch.manual_seed(0)
    extractor = FeatureExtractor(2, channels=(4, 8))
    metric = build_metric("deepsim", MetricInputs(extractor=extractor))
    moving = _texture((48, 48))
    config = OptimiseConfig(levels=2, iterations=4, diffeomorphic=True, transform="dense")
    result = optimise_pair(moving.roll(1, 3), moving, metric, config)
    assert result.iterations == 8 and result.loss <= result.initial_loss


def test_images_with_several_channels():
    moving = torch.cat([_texture((40, 40), seed=5), _texture((40, 40), seed=6)], dim=1)
    result = optimise_pair(moving.roll(1, 3), moving, build_metric("ncc"), OptimiseConfig(levels=2))
    assert result.displacement.shape == (1, 2, 40, 40)
    assert result.loss < result.initial_loss


def test_bspline_reproduces_linear_fields():
    shape, spacing = (19, 26), 4
    grid = control_shape(shape, spacing)
    ramp = (torch.arange(grid[1], dtype=torch.float32) - 1) * spacing
    control = ramp.expand(1, 1, *grid).contiguous()
    field = bspline_field(control, shape, spacing)
    torch.testing.assert_close(field[0, 0], identity_grid(shape)[1], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"iterations": 0}, "iterations must be an integer >= 1"),
        ({"iterations": (5, 5), "levels": 3}, "iterations lists 2 levels"),
        ({"iterations": (5, 0)}, "every level needs at least one"),
        ({"levels": 0}, "levels must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"transform": "spline"}, "transform must be one of"),
        ({"transform": "none"}, "nothing to optimise"),
        ({"lam": float("nan")}, "lam must be"),
    ],
)
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        OptimiseConfig(**options)


def test_too_deep_a_pyramid_is_refused_at_the_call():
    image = torch.zeros(1, 1, 40, 64)
    with pytest.raises(ValueError, match=r"levels=4 is too deep .* use levels <= 3"):
        optimise(image, image, build_metric("mse"), OptimiseConfig(levels=4))


def test_automatic_levels_and_weight_follow_the_image_and_metric():
    moving = _texture((20, 20))
    result = optimise_pair(moving.roll(1, 2), moving, build_metric("mse"))
    assert result.config.levels == 2 and result.config.iterations == (25, 5)
    assert result.config.lam == 0.25
    assert set(DEFAULT_LAMBDA) == set(METRICS)  # every registered metric has a default λ
    lam = optimise_pair(moving, moving, build_metric("mse"), OptimiseConfig(lam=2.0)).config.lam
    assert lam == 2.0


def test_a_refinement_defaults_to_a_short_schedule_and_a_stiffer_weight():
    moving = _texture((64, 64))
    config = optimisation_config(refine=True)
    assert config.iterations == REFINE_ITERATIONS and config.lam_scale == REFINE_LAM_SCALE
    result = optimise_pair(moving.roll(1, 2), moving, build_metric("ncc"), config)
    assert result.config.levels == len(REFINE_ITERATIONS)
    assert result.config.lam == DEFAULT_LAMBDA["ncc"] * REFINE_LAM_SCALE
    two = optimisation_config(levels=2, refine=True)
    assert two.iterations == REFINE_ITERATIONS[-2:]  # the finest levels' counts
    typed = optimisation_config(iterations="7", lam=0.5, refine=True)
    assert typed.iterations == 7
    assert optimise_pair(moving, moving, build_metric("ncc"), typed).config.lam == 0.5


def test_a_refinement_starts_with_an_affine_stage_unless_told_otherwise():
    assert optimisation_config(refine=True).affine == "affine"  # the model misses big shifts
    assert optimisation_config(refine=True, linear="none").affine is None
    assert optimisation_config(refine=True, linear="rigid").affine == "rigid"
    assert optimisation_config().affine is None  # from the identity: none unless asked
    assert optimisation_config(linear="affine").affine == "affine"


def test_bad_inputs_are_refused(image2d):
    metric = build_metric("mse")
    with pytest.raises(ValueError, match="differ in shape"):
        optimise(image2d, image2d[..., :-1], metric)
    with pytest.raises(ValueError, match="one \\(1, C, H, W\\)"):
        optimise(image2d[0], image2d[0], metric)
    with pytest.raises(ValueError, match="init must have shape"):
        optimise(image2d, image2d, metric, init=torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="mask is empty"):
        optimise(image2d, image2d, metric, mask=np.zeros((128, 128), bool))


def test_memory_is_checked_before_allocating(monkeypatch, image2d):
    monkeypatch.setattr("src_training.runtime.memory.available_memory", lambda device: 1024)
    with pytest.raises(ValueError, match=r"needs about .* crop or downsample"):
        optimise(image2d, image2d, build_metric("mse"))


def test_a_stack_optimises_every_frame_and_reports_a_summary():
    from src_training.engine.optimisation import Optimisation
    from src_training.engine.registration import run_to_end
    from src_training.engine.series import register_stack

    frames = torch.cat([_texture((32, 32), seed) for seed in range(3)]).numpy()
    optimisation = Optimisation(build_metric("mse"), OptimiseConfig(iterations=(5, 5)))
    series = run_to_end(register_stack(None, frames, "previous", optimisation=optimisation))
    assert series.fields.shape == (3, 2, 32, 32)
    np.testing.assert_array_equal(series.fields[0], 0)
    assert series.optimisation is not None and series.optimisation.metric == "mse"
    assert 0 < series.optimisation.iterations <= 20
