"""Similarity metrics: analytic values, invariances, gradients, frozen networks, registry."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from src_training.metrics import (
    METRICS,
    feature_cosine_loss,
    get_metric,
    local_ncc,
    metric_names,
    mind_ssc,
)
from src_training.metrics.dice import soft_dice_loss
from src_training.metrics.vgg16 import VGG16Features, load_vgg16_weights
from src_training.spatial import transforms as S

SHAPES = {2: (40, 40), 3: (16, 16, 16)}
VGG_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256)}
VGG_CONVS |= {12: (256, 256), 14: (256, 256)}


def smooth_image(shape, seed=0, sigma=3.0, dtype=torch.float32):
    """Periodic smooth noise in [0, 1], so that torch.roll is a meaningful shift."""
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return torch.from_numpy(noise).to(dtype)[None, None]


class TinyExtractor(nn.Module):
    """Two strided conv stages with LeakyReLU: features at 1/2 and 1/4 resolution."""

    def __init__(self, ndim, kind="segmentation", seed=0):
        super().__init__()
        torch.manual_seed(seed)
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        self.kind = kind
        self.stage1 = conv(1, 6, 4, stride=2, padding=1)
        self.stage2 = conv(6, 12, 4, stride=2, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.head = conv(1, 2, 3, padding=1)  # two classes, for deepsim-seg

    def forward(self, x):
        return self.head(x)

    def features(self, x):
        first = F.leaky_relu(self.dropout(self.stage1(x)), 0.2)
        return [first, F.leaky_relu(self.stage2(first), 0.2)]


def build(name, ndim=2, dtype=torch.float32):
    kind = METRICS[name].extractor_kind
    if kind is not None:
        return get_metric(name, extractor=TinyExtractor(ndim, kind).to(dtype))
    if name == "vgg":
        torch.manual_seed(0)
        return get_metric(name, network=VGG16Features().to(dtype))
    return get_metric(name)


def labels_of(image, classes=3):
    """Integer label ids from intensity thresholds."""
    return (image * classes).long().clamp(max=classes - 1)


def evaluate(name, metric, warped, fixed, warped_ids=None, fixed_ids=None):
    if METRICS[name].needs_labels:
        onehot = S.one_hot(warped_ids, 3).to(warped.dtype)
        return metric(warped, fixed, warped_labels=onehot, fixed_labels=fixed_ids)
    return metric(warped, fixed)


# --- registry -----------------------------------------------------------------------------


def test_registry_lists_the_metrics_in_order():
    maps = ["deepsim-maps", "deepsim+mse", "deepsim+ncc"]
    seg = ["deepsim-seg", "deepsim-seg+ncc"]
    features = ["deepsim", *seg, "deepsim-ae", *maps]
    expected = ["mse", "ncc", "ncc-sup", "nmi", "mind", "vgg", *features]
    assert metric_names() == expected
    assert list(METRICS) == expected
    assert [n for n in expected if METRICS[n].needs_labels] == ["ncc-sup"]
    assert [n for n in expected if METRICS[n].needs_extractor] == features
    assert [n for n in expected if METRICS[n].feature_maps] == maps
    assert [n for n in expected if METRICS[n].probabilities] == seg
    assert [n for n in expected if METRICS[n].needs_weights] == ["vgg"]
    assert METRICS["mse"].default_lambda == 0.02
    assert METRICS["deepsim"].default_lambda == 1.0
    assert all("\n" not in spec.description for spec in METRICS.values())


def test_unknown_metric_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown metric 'ssim'") as err:
        get_metric("ssim")
    assert all(name in str(err.value) for name in metric_names())


def test_unknown_option_is_readable():
    with pytest.raises(TypeError, match="window") as err:
        get_metric("ncc", windw=5)
    assert "windw" in str(err.value)


@pytest.mark.parametrize("name", ["deepsim", "deepsim-ae"])
def test_deepsim_without_extractor_says_how_to_get_one(name):
    with pytest.raises(ValueError, match="train-features"):
        get_metric(name)


def test_extractor_kind_must_match_the_metric():
    with pytest.raises(ValueError, match="autoencoder"):
        get_metric("deepsim", extractor=TinyExtractor(2, kind="autoencoder"))
    with pytest.raises(ValueError, match="segmentation"):
        get_metric("deepsim-ae", extractor=TinyExtractor(2, kind="segmentation"))


def test_deepsim_levels_compare_only_the_chosen_stages():
    extractor = TinyExtractor(2)
    fixed, warped = smooth_image((32, 32), seed=1), smooth_image((32, 32), seed=2)
    maps_w, maps_f = extractor.eval().features(warped), extractor.features(fixed)
    second = get_metric("deepsim", extractor=extractor, levels=[2])(warped, fixed)
    both = get_metric("deepsim", extractor=extractor)(warped, fixed)
    assert second == pytest.approx(feature_cosine_loss(maps_w[1:], maps_f[1:]).item(), abs=1e-7)
    assert both == pytest.approx(feature_cosine_loss(maps_w, maps_f).item(), abs=1e-7)
    assert abs(second.item() - both.item()) > 1e-3  # the first stage did count before


@pytest.mark.parametrize("levels", [[0, 1], [1, 1], []])
def test_deepsim_levels_must_be_distinct_stage_numbers(levels):
    with pytest.raises(ValueError, match=r"distinct stage numbers from 1 up.*--feature-levels"):
        get_metric("deepsim", extractor=TinyExtractor(2), levels=levels)


def test_deepsim_levels_beyond_the_encoder_are_refused():
    from src_training.networks.models import FeatureExtractor

    with pytest.raises(ValueError, match="has 2 encoder stages; choose levels from 1 to 2"):
        get_metric("deepsim", extractor=FeatureExtractor(2, channels=(4, 8)), levels=[3])
    metric = get_metric("deepsim", extractor=TinyExtractor(2), levels=[3])  # no config()
    with pytest.raises(ValueError, match="has 2 encoder stages"):
        metric(smooth_image((32, 32)), smooth_image((32, 32), seed=1))


def test_vgg_without_weights_says_how_to_get_them():
    with pytest.raises(ValueError, match="vgg16"):
        get_metric("vgg")


# --- every metric: minimal at alignment, decreasing as a shift is undone ---------------------

SHIFT_CASES = [(name, 2) for name in metric_names()] + [(name, 3) for name in metric_names()]


@pytest.mark.parametrize(("name", "ndim"), SHIFT_CASES)
def test_loss_decreases_as_a_shift_is_undone(name, ndim):
    fixed = smooth_image(SHAPES[ndim])
    metric = build(name, ndim)
    dims = tuple(range(2, 2 + ndim))
    losses = []
    for shift in (4, 2, 0):
        warped = torch.roll(fixed, (shift,) * ndim, dims)
        ids = torch.roll(labels_of(fixed), (shift,) * ndim, dims)
        losses.append(evaluate(name, metric, warped, fixed, ids, labels_of(fixed)).item())
    assert losses[0] > losses[1] > losses[2], losses
    assert all(np.isfinite(losses))


@pytest.mark.parametrize("name", ["mse", "mind", "vgg", "deepsim", "deepsim-ae"])
def test_identical_images_give_zero_loss(name):
    image = smooth_image(SHAPES[2])
    assert build(name)(image, image).item() == pytest.approx(0.0, abs=1e-6)


# --- NCC ------------------------------------------------------------------------------------


def brute_force_cc(i, j, window, eps):
    """Squared NCC of standardised images over zero-padded windows, with centred sums."""
    r = window // 2
    i = F.pad((i - i.mean()) / i.std(correction=0), (r, r, r, r))
    j = F.pad((j - j.mean()) / j.std(correction=0), (r, r, r, r))
    out = torch.zeros(i.shape[0] - 2 * r, i.shape[1] - 2 * r, dtype=i.dtype)
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            a = i[y : y + window, x : x + window]
            b = j[y : y + window, x : x + window]
            da, db = a - a.mean(), b - b.mean()
            cov = (da * db).mean()
            out[y, x] = cov**2 / ((da**2).mean() * (db**2).mean() + eps)
    return out


@pytest.mark.parametrize("window", [3, 5, 9])
def test_ncc_box_filter_matches_a_brute_force_window_sum(window):
    torch.manual_seed(1)
    i, j = torch.rand(2, 9, 11, dtype=torch.float64)
    fast = local_ncc(i[None, None], j[None, None], window=window, eps=1e-5)[0, 0]
    torch.testing.assert_close(fast, brute_force_cc(i, j, window, 1e-5), atol=1e-10, rtol=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_ncc_of_an_affine_copy_is_near_zero_and_affine_invariant(ndim):
    ncc = get_metric("ncc")
    image = smooth_image(SHAPES[ndim], seed=2)
    other = smooth_image(SHAPES[ndim], seed=3)
    assert ncc(image, 3.0 * image + 0.5).item() < 1e-3
    assert ncc(image, -image).item() < 1e-3  # squared NCC ignores the sign
    base = ncc(image, other)
    assert base.item() > 0.5
    assert abs(base - ncc(image, 3.0 * other + 0.5)).item() < 1e-4
    assert abs(base - ncc(0.2 * image - 1.0, other)).item() < 1e-4


def test_ncc_averages_channels():
    ncc = get_metric("ncc", window=5)
    a, b = smooth_image(SHAPES[2], 4), smooth_image(SHAPES[2], 5)
    c, d = smooth_image(SHAPES[2], 6), smooth_image(SHAPES[2], 7)
    both = ncc(torch.cat([a, c], 1), torch.cat([b, d], 1))
    torch.testing.assert_close(both, (ncc(a, b) + ncc(c, d)) / 2)


@pytest.mark.parametrize("ndim", [2, 3])
def test_ncc_is_finite_on_flat_images(ndim):
    flat = torch.full((1, 1, *SHAPES[ndim]), 0.7, requires_grad=True)
    half = smooth_image(SHAPES[ndim]).clone()
    half[..., : SHAPES[ndim][-1] // 2] = 0.2  # flat on one half, textured on the other
    ncc = get_metric("ncc")
    for warped, fixed in [(flat, flat), (flat, half), (half * flat, half)]:
        loss = ncc(warped, fixed)
        (grad,) = torch.autograd.grad(loss, flat)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        assert 0.0 <= loss.item() <= 1.0


# --- NMI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("remap", [torch.sqrt, lambda x: x**2])
def test_nmi_is_nearly_invariant_to_a_monotone_remapping(remap):
    nmi, mse = get_metric("nmi"), get_metric("mse")
    image = smooth_image(SHAPES[2])
    moved = torch.roll(image, (1, 1), (2, 3))
    # Soft binning makes NMI only nearly invariant: the remapping squeezes some intensity
    # ranges into fewer bins. Measured change ~0.03, against ~0.26 for a one-voxel shift.
    change = abs(nmi(image, remap(image)) - nmi(image, image)).item()
    shift_effect = (nmi(image, moved) - nmi(image, image)).item()
    assert change < 0.05 < 0.2 < shift_effect
    assert abs(nmi(image, remap(moved)) - nmi(image, moved)).item() < 0.05
    # ... unlike an intensity difference, which the remapping changes a lot
    assert mse(image, remap(image)).item() > mse(image, moved).item()


def test_nmi_prefers_the_same_image_to_independent_noise():
    nmi = get_metric("nmi")
    image = smooth_image(SHAPES[2])
    noise = torch.rand(image.shape, generator=torch.Generator().manual_seed(0))
    same, independent = nmi(image, image).item(), nmi(image, noise).item()
    assert 0.0 <= same < 0.6 < 0.95 < independent <= 1.0


def test_nmi_subsampling_bounds_the_sample_count_and_keeps_the_value():
    image, other = smooth_image((64, 64), 1), smooth_image((64, 64), 2)
    full = get_metric("nmi")(image, other)
    sampled = get_metric("nmi", max_samples=1024)(image, other)
    assert abs(full - sampled).item() < 0.05
    assert get_metric("nmi", max_samples=1024)._samples(image).shape == (1, 1024)


# --- MIND -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ndim", "pairs"), [(2, 4), (3, 12)])
def test_mind_descriptor_shape_range_and_flat_images(ndim, pairs):
    image = smooth_image(SHAPES[ndim]).repeat(1, 2, *([1] * ndim))
    descriptor = mind_ssc(image)
    assert descriptor.shape == (1, 2 * pairs, *SHAPES[ndim])
    assert (descriptor > 0).all() and (descriptor <= 1).all()
    flat = mind_ssc(torch.full((1, 1, *SHAPES[ndim]), 3.0))
    assert torch.isfinite(flat).all()
    torch.testing.assert_close(flat, torch.ones_like(flat))


@pytest.mark.parametrize("ndim", [2, 3])
def test_mind_is_invariant_to_affine_intensity_changes(ndim):
    image = smooth_image(SHAPES[ndim], seed=8)
    torch.testing.assert_close(mind_ssc(3.0 * image + 0.5), mind_ssc(image), atol=1e-5, rtol=0)


# --- DeepSim and VGG ------------------------------------------------------------------------


def test_feature_cosine_loss_matches_torch_cosine_similarity():
    torch.manual_seed(3)
    a = [torch.randn(2, 5, 6, 7), torch.randn(2, 3, 3, 4)]
    b = [torch.randn(2, 5, 6, 7), torch.randn(2, 3, 3, 4)]
    expected = 1 - torch.stack(
        [F.cosine_similarity(x, y, dim=1).mean() for x, y in zip(a, b, strict=True)]
    )
    torch.testing.assert_close(feature_cosine_loss(a, b), expected.mean())
    zero = [torch.zeros(1, 4, 3, 3)]
    assert feature_cosine_loss(zero, zero).item() == 1.0  # cosine 0, not NaN


def test_vgg_compares_3d_volumes_slice_by_slice():
    vgg = build("vgg")
    volume, other = smooth_image((3, 24, 24), 1), smooth_image((3, 24, 24), 2)
    per_slice = [vgg(volume[:, :, k], other[:, :, k]) for k in range(3)]
    torch.testing.assert_close(vgg(volume, other), torch.stack(per_slice).mean())


@pytest.mark.parametrize("name", ["vgg", "deepsim", "deepsim-ae"])
def test_networks_stay_frozen_and_in_eval_mode(name):
    metric = build(name)
    metric.train()
    assert metric.training
    assert not metric.network.training
    assert not any(m.training for m in metric.network.modules())
    assert not any(p.requires_grad for p in metric.parameters())
    image = smooth_image(SHAPES[2])
    warped = torch.roll(image, (1, 1), (2, 3)).requires_grad_(True)
    first = metric(warped, image)
    assert first.item() == metric(warped, image).item()  # dropout stays off
    (grad,) = torch.autograd.grad(first, warped)
    assert grad.abs().sum() > 0


# --- gradients reach the displacement -------------------------------------------------------


def _plateau_image(seed):
    """8x8 image in [0.1, 0.9] with flat max and min corners, so that small warps keep the
    image's min and max (which NMI detaches) fixed."""
    torch.manual_seed(seed)
    image = 0.1 + 0.8 * torch.rand(1, 1, 8, 8, dtype=torch.float64)
    image[..., :3, :3] = 1.0
    image[..., -3:, -3:] = 0.0
    return image


@pytest.mark.parametrize("name", ["mse", "ncc", "ncc-sup", "nmi", "mind", "deepsim"])
def test_gradcheck_through_warp(name):
    moving, fixed = _plateau_image(0), _plateau_image(1)
    ids = labels_of(moving)
    torch.manual_seed(2)
    # Away from integer sampling positions, where bilinear interpolation has kinks.
    disp = (0.3 * torch.rand(1, 2, 8, 8, dtype=torch.float64) + 0.1).requires_grad_(True)
    options = {"window": 5} if name in ("ncc", "ncc-sup") else {}
    if name == "deepsim":
        options = {"extractor": TinyExtractor(2).double()}
    metric = get_metric(name, **options)

    def loss(d):
        warped = S.warp(moving, d)
        if name == "ncc-sup":
            soft = S.warp_onehot(ids, d, 3)
            return metric(warped, fixed, warped_labels=soft, fixed_labels=labels_of(fixed))
        return metric(warped, fixed)

    assert torch.autograd.gradcheck(loss, (disp,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_vgg_gradient_reaches_the_displacement():
    vgg = build("vgg")
    moving, fixed = smooth_image((24, 24), 1), smooth_image((24, 24), 2)
    disp = torch.full((1, 2, 24, 24), 0.3, requires_grad=True)
    vgg(S.warp(moving, disp), fixed).backward()
    assert torch.isfinite(disp.grad).all() and disp.grad.abs().sum() > 0


@pytest.mark.parametrize("name", metric_names())
@pytest.mark.parametrize("ndim", [2, 3])
def test_flat_images_give_finite_losses_and_gradients(name, ndim):
    shape = (1, 1, 8, 24, 24) if ndim == 3 else (1, 1, 24, 24)
    metric = build(name, ndim)
    ids = torch.zeros(shape, dtype=torch.long)
    for fixed_value in (0.5, None):
        value = torch.tensor(0.5, requires_grad=True)
        warped = value * torch.ones(shape)
        fixed = smooth_image(shape[2:]) if fixed_value is None else torch.full(shape, fixed_value)
        loss = evaluate(name, metric, warped, fixed, ids, ids)
        (grad,) = torch.autograd.grad(loss, value)
        assert torch.isfinite(loss) and torch.isfinite(grad), (loss, grad)


# --- NCC with labels ------------------------------------------------------------------------


@pytest.mark.parametrize("label_loss", ["mse", "dice"])
def test_ncc_sup_label_term(label_loss):
    image = smooth_image(SHAPES[2])
    ids = labels_of(image)
    onehot = S.one_hot(ids, 3)
    ncc = get_metric("ncc")(image, image)
    sup = get_metric("ncc-sup", label_loss=label_loss, label_weight=2.0)
    # integer ids and one-hot fixed labels are the same thing
    same_ids = sup(image, image, warped_labels=onehot, fixed_labels=ids)
    same_onehot = sup(image, image, warped_labels=onehot, fixed_labels=onehot)
    torch.testing.assert_close(same_ids, ncc)
    torch.testing.assert_close(same_onehot, ncc)
    shifted = [torch.roll(onehot, (s, s), (2, 3)) for s in (1, 3)]
    near, far = (sup(image, image, warped_labels=o, fixed_labels=ids) for o in shifted)
    assert ncc < near < far
    wrong = sup(image, image, warped_labels=onehot.roll(1, dims=1), fixed_labels=ids)
    expected_term = 2 / 3 if label_loss == "mse" else 1.0  # every voxel in the wrong class
    torch.testing.assert_close(wrong - ncc, torch.tensor(2.0 * expected_term))


def test_ncc_sup_needs_labels():
    image = smooth_image(SHAPES[2])
    with pytest.raises(ValueError, match="warped_labels"):
        get_metric("ncc-sup")(image, image)
    with pytest.raises(ValueError, match="label_loss"):
        get_metric("ncc-sup", label_loss="ce")


def test_soft_dice_skips_classes_absent_from_both_maps():
    target = torch.zeros(1, 3, 4, 4)
    target[:, 0, :2] = 1.0
    target[:, 1, 2:] = 1.0  # class 2 is absent everywhere
    assert soft_dice_loss(target, target).item() == pytest.approx(0.0)
    pred = target.clone()
    pred[:, :, 3] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1)  # one row labelled 0
    # class 0: 2*8/(8+12) = 0.8, class 1: 2*4/(4+8) = 2/3
    assert soft_dice_loss(pred, target).item() == pytest.approx(1 - (0.8 + 2 / 3) / 2)


# --- VGG weights ----------------------------------------------------------------------------


def torchvision_like_state_dict():
    torch.manual_seed(4)
    state = {}
    for index, (c_in, c_out) in VGG_CONVS.items():
        state[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3)
        state[f"features.{index}.bias"] = torch.randn(c_out)
    state["features.17.weight"] = torch.randn(512, 256, 3, 3)
    state["classifier.0.weight"] = torch.randn(8, 16)
    return state


def test_vgg_weights_round_trip(tmp_path):
    state = torchvision_like_state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = load_vgg16_weights(path)
    loaded = net.state_dict()
    expected = {f"features.{i}.{kind}" for i in VGG_CONVS for kind in ("weight", "bias")}
    assert set(loaded) == expected
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], atol=0, rtol=0)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    metric = get_metric("vgg", weights=str(path))
    torch.testing.assert_close(metric.network.features[14].bias, state["features.14.bias"])
    feats = net(torch.rand(1, 3, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4)]


def test_vgg_weights_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "vgg16.pth"
    with pytest.raises(FileNotFoundError, match="IMAGENET1K_V1") as err:
        load_vgg16_weights(path)
    assert str(path) in str(err.value)


def test_vgg_weights_missing_or_misshaped_keys(tmp_path):
    state = torchvision_like_state_dict()
    del state["features.12.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"features\.12\.bias"):
        load_vgg16_weights(tmp_path / "partial.pth")
    state = torchvision_like_state_dict()
    state["features.5.weight"] = torch.randn(128, 32, 3, 3)
    torch.save(state, tmp_path / "shapes.pth")
    with pytest.raises(ValueError, match=r"features\.5\.weight"):
        load_vgg16_weights(tmp_path / "shapes.pth")


def test_vgg_safetensors_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "vgg16.safetensors"
    path.write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ValueError, match="pip install safetensors"):
        load_vgg16_weights(path)


def test_vgg_safetensors_round_trip(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = torchvision_like_state_dict()
    path = tmp_path / "vgg16.safetensors"
    safetensors_torch.save_file(state, str(path))
    loaded = load_vgg16_weights(path).state_dict()
    torch.testing.assert_close(loaded["features.0.weight"], state["features.0.weight"])
