"""Property-based tests (hypothesis) of the spatial operations and the metrics.

Random 2D and 3D shapes (small), batch sizes, channel counts, dtypes and fields:
the identities of warping, composing and integrating, the Jacobian of affine maps, and
for every metric a finite value in its range, symmetry where the definition is
symmetric, and zero (or its minimum) for identical images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from src_training.metrics import METRICS, get_metric, local_ncc, metric_names
from src_training.metrics.vgg16 import VGG16Features
from src_training.networks.models import FeatureExtractor
from src_training.spatial.transforms import (
    affine_displacement,
    compose,
    integrate_velocity,
    jacobian_determinant,
    warp,
    warp_labels,
)

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = settings(max_examples=25, deadline=None)
DTYPES = st.sampled_from([torch.float32, torch.float64])
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


@st.composite
def grids(draw, min_size: int = 1) -> tuple[int, int, tuple[int, ...]]:
    """``(batch, channels, spatial shape)`` of a small 2D or 3D image."""
    ndim = draw(st.sampled_from([2, 3]))
    largest = 12 if ndim == 2 else 6
    shape = tuple(draw(st.integers(min_size, largest)) for _ in range(ndim))
    return draw(st.integers(1, 2)), draw(st.integers(1, 2)), shape


def _random(seed: int, shape: tuple[int, ...], dtype: torch.dtype, scale: float = 1.0):
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(shape, generator=generator, dtype=dtype)


@FAST
@given(grids(), DTYPES, st.integers(0, 2**31 - 1))
def test_warping_by_a_zero_field_is_the_identity(grid, dtype, seed):
    batch, channels, shape = grid
    image = _random(seed, (batch, channels, *shape), dtype)
    zero = torch.zeros(batch, len(shape), *shape, dtype=dtype)
    torch.testing.assert_close(warp(image, zero), image, rtol=0, atol=TOLERANCE[dtype])
    labels = torch.randint(0, 5, (batch, 1, *shape), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(warp_labels(labels, zero.float()), labels)


@FAST
@given(grids(), DTYPES, st.integers(0, 2**31 - 1), st.floats(0.0, 3.0))
def test_composing_with_a_zero_field_changes_nothing(grid, dtype, seed, scale):
    batch, _, shape = grid
    field = _random(seed, (batch, len(shape), *shape), dtype, scale)
    zero = torch.zeros_like(field)
    atol = TOLERANCE[dtype] * max(1.0, scale)
    torch.testing.assert_close(compose(field, zero), field, rtol=0, atol=atol)
    torch.testing.assert_close(compose(zero, field), field, rtol=0, atol=atol)


@FAST
@given(grids(), DTYPES, st.integers(0, 10))
def test_integrating_a_zero_velocity_gives_a_zero_displacement(grid, dtype, steps):
    batch, _, shape = grid
    zero = torch.zeros(batch, len(shape), *shape, dtype=dtype)
    assert torch.equal(integrate_velocity(zero, steps), zero)


@FAST
@given(grids(min_size=2), DTYPES, st.integers(0, 2**31 - 1))
def test_the_jacobian_determinant_of_an_affine_map_is_det_a(grid, dtype, seed):
    batch, _, shape = grid
    ndim = len(shape)
    matrix = torch.eye(ndim, dtype=dtype) + _random(seed, (batch, ndim, ndim), dtype, 0.5)
    translation = _random(seed + 1, (batch, ndim), dtype, 3.0)
    det = jacobian_determinant(affine_displacement(matrix, translation, shape))
    expected = torch.linalg.det(matrix).view(batch, *([1] * ndim)).expand_as(det)
    atol = {torch.float32: 1e-4, torch.float64: 1e-10}[dtype]
    torch.testing.assert_close(det, expected, rtol=0, atol=atol)


# --- metrics ------------------------------------------------------------------------------

# Metrics whose value does not change when warped and fixed swap places. ncc-sup is left
# out: its label term compares warped one-hot labels with fixed label ids.
SYMMETRIC = ("mse", "ncc", "nmi", "mind", "vgg", "deepsim", "deepsim-ae")
# Value ranges by definition: NCC and NMI losses in [0, 1], feature cosine losses in [0, 2].
RANGES = {"ncc": (0.0, 1.0), "nmi": (0.0, 1.0), "vgg": (0.0, 2.0), "deepsim": (0.0, 2.0)}
RANGES |= {"deepsim-ae": (0.0, 2.0), "mse": (0.0, np.inf), "mind": (0.0, np.inf)}
RANGES |= {"ncc-sup": (0.0, np.inf), "deepsim-seg": (0.0, 1.0)}
RANGES |= {"deepsim-seg+ncc": (0.0, 10.0)}  # NCC in [0, 1] plus 9 times deepsim-seg
RANGES |= {name: (0.0, np.inf) for name in ("deepsim-maps", "deepsim+mse", "deepsim+ncc")}
NETWORKS: dict[tuple[str, int, torch.dtype], torch.nn.Module] = {}


def _metric(name: str, ndim: int, dtype: torch.dtype) -> torch.nn.Module:
    """The metric, with one random network per (name, ndim, dtype) built once."""
    key = (name, ndim, dtype)
    if key not in NETWORKS:
        torch.manual_seed(0)
        if METRICS[name].needs_weights:
            NETWORKS[key] = get_metric(name, network=VGG16Features().to(dtype))
        elif METRICS[name].needs_extractor:
            kind = "autoencoder" if name == "deepsim-ae" else "segmentation"
            network = FeatureExtractor(ndim, 1, 2, (4, 8), kind=kind).to(dtype)
            NETWORKS[key] = get_metric(name, extractor=network)
        else:
            NETWORKS[key] = get_metric(name)
    return NETWORKS[key]


def _loss(name: str, warped: torch.Tensor, fixed: torch.Tensor) -> float:
    metric = _metric(name, warped.dim() - 2, warped.dtype)
    if not METRICS[name].needs_labels:
        return metric(warped, fixed).item()
    ids = [(image > image.mean()).long() for image in (warped, fixed)]
    onehot = torch.cat([1 - ids[0], ids[0]], dim=1).to(warped.dtype)
    return metric(warped, fixed, warped_labels=onehot, fixed_labels=ids[1]).item()


@st.composite
def image_pairs(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """Two single-channel images of one small shape: noise, or one of them constant."""
    batch, _, shape = draw(grids(min_size=2))
    dtype = draw(DTYPES)
    seed = draw(st.integers(0, 2**31 - 1))
    warped = torch.rand((batch, 1, *shape), generator=torch.Generator().manual_seed(seed))
    fixed = torch.rand((batch, 1, *shape), generator=torch.Generator().manual_seed(seed + 1))
    if draw(st.booleans()):
        fixed = torch.full_like(fixed, draw(st.floats(-2.0, 2.0)))
    return warped.to(dtype), fixed.to(dtype)


@FAST
@given(image_pairs(), st.sampled_from(metric_names()))
def test_every_metric_is_finite_and_within_its_range(pair, name):
    warped, fixed = pair
    low, high = RANGES[name]
    value = _loss(name, warped, fixed)
    slack = 1e-5 if warped.dtype == torch.float32 else 1e-9
    assert np.isfinite(value) and low - slack <= value <= high + slack, (name, value)


@FAST
@given(image_pairs(), st.sampled_from(SYMMETRIC))
def test_symmetric_metrics_do_not_depend_on_the_order(pair, name):
    warped, fixed = pair
    forward, backward = _loss(name, warped, fixed), _loss(name, fixed, warped)
    tolerance = 1e-4 if warped.dtype == torch.float32 else 1e-9
    assert forward == pytest.approx(backward, abs=tolerance), name


@FAST
@given(image_pairs(), st.sampled_from(["mse", "mind", "vgg", "deepsim", "deepsim-ae"]))
def test_identical_images_give_the_smallest_loss(pair, name):
    image = pair[0]
    tolerance = 1e-5 if image.dtype == torch.float32 else 1e-9
    assert _loss(name, image, image) == pytest.approx(0.0, abs=tolerance), name


@FAST
@given(image_pairs(), st.sampled_from([1, 3, 5, 9]))
def test_the_local_ncc_map_lies_in_zero_one(pair, window):
    warped, fixed = pair
    cc = local_ncc(warped, fixed, window=window)
    slack = 1e-5 if warped.dtype == torch.float32 else 1e-9
    assert torch.isfinite(cc).all()
    assert cc.min() >= -slack and cc.max() <= 1 + slack
