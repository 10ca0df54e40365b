"""DeepSim on feature maps: recovery of a known deformation, extract-then-warp, bad options."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from src_training.engine.optimisation import user_optimisation
from src_training.metrics.feature_maps import FeatureMaps, FeatureOptions
from src_training.metrics.registry import MetricInputs, build_metric
from src_training.optimisation import OptimiseConfig, optimise_pair
from src_training.optimisation.config import DEEPSIM_OPTIMISED, DEEPSIM_STAGES_OPTIMISED
from src_training.spatial.transforms import warp

DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
ISBI = Path(__file__).resolve().parents[4] / "shared" / "data" / "isbi2012_em" / "images"
needs_data = pytest.mark.skipif(not ISBI.is_dir(), reason="../shared/data is absent")
MARGIN = 16  # interior: away from the border, where the image leaves the grid


def smooth_field(shape: tuple[int, int], amplitude: float = 1.5) -> torch.Tensor:
    """A smooth displacement of at most ``amplitude`` pixels (half a period over the image)."""
    y, x = torch.meshgrid(*(torch.linspace(0, np.pi, n) for n in shape), indexing="ij")
    return amplitude * torch.stack([torch.sin(x) * torch.cos(y), torch.cos(x + y)])[None]


VARIANTS = {
    "deepsim-maps mse": ("deepsim-maps", FeatureOptions()),
    "deepsim-maps cosine": ("deepsim-maps", FeatureOptions(distance="cosine")),
    "deepsim-maps ncc": ("deepsim-maps", FeatureOptions(distance="ncc", pca=4)),
    "deepsim-maps coarse": ("deepsim-maps", FeatureOptions(stages="coarse")),
    "warp-then-extract": ("deepsim-maps", FeatureOptions(static=False)),
    "deepsim+mse": ("deepsim+mse", FeatureOptions()),
    "deepsim+ncc": ("deepsim+ncc", FeatureOptions()),
}


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_recovers_a_known_smooth_deformation(variant, extractor, section):
    name, options = VARIANTS[variant]
    truth = smooth_field(tuple(section.shape[2:]))
    fixed = warp(section, truth)  # fixed(x) = moving(x + truth(x))
    metric = build_metric(name, MetricInputs(extractor, feature_options=options))
    config = OptimiseConfig(levels=3, iterations=(60, 40, 20), lam=0.25, patience=20)
    found = optimise_pair(fixed, section, metric, config).displacement
    inner = (slice(None), slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    error = torch.linalg.vector_norm(found - truth, dim=1)[inner[:1] + inner[2:]].mean()
    start = torch.linalg.vector_norm(truth, dim=1)[inner[:1] + inner[2:]].mean()
    assert error < 0.5 < start, (variant, float(error), float(start))


@needs_data
def test_extract_then_warp_equals_warp_then_extract_for_a_whole_cell_translation(
    extractor, section
):
    # a shift by 8 pixels (one cell of the deepest stage, 2**3) commutes with every
    # convolution and pooling of the encoder away from the border
    metric = FeatureMaps(extractor)
    shape = tuple(section.shape[2:])
    shift = torch.zeros(1, 2, *shape)
    shift[:, 1] = 8.0  # warped(x) = moving(x + 8) along the last axis
    shifted = warp(section, shift)
    extracted = metric.level_maps(metric.stage_maps(section), section, shape)
    then_warped = warp(extracted, shift)
    warped_then = metric.level_maps(metric.stage_maps(shifted), shifted, shape)
    inner = (slice(None), slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN - 8))
    a, b = then_warped[inner], warped_then[inner]
    # each channel is normalised over the whole image, so allow for the border's share
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.99
    assert (a - b).abs().mean() < 0.1 * a.abs().mean()


@needs_data
@pytest.mark.parametrize("stages", ["all", "coarse"])
def test_level_stacks_from_all_positions_equal_the_full_stacks_reduced(extractor, section, stages):
    metric = FeatureMaps(extractor, stages=stages, positions=None)
    other = warp(section, smooth_field(tuple(section.shape[2:]), 3.0))
    for shape in [(128, 128), (64, 64), (32, 32)]:
        raws = tuple(
            F.interpolate(x, shape, mode="bilinear", align_corners=True) for x in (section, other)
        )
        maps = (metric.stage_maps(section), metric.stage_maps(other))
        full = metric.reduce(
            *(metric.level_maps(m, r, (128, 128)) for m, r in zip(maps, raws, strict=True))
        )
        fast = metric.level_pair(maps, raws, (128, 128))
        for a, b in zip(full, fast, strict=True):
            # an eigenvector's sign is arbitrary: compare each component up to its sign
            signs = torch.sign((a[:, 1:] * b[:, 1:]).sum(dim=(0, 2, 3)))[None, :, None, None]
            torch.testing.assert_close(b[:, :1], a[:, :1])
            torch.testing.assert_close(b[:, 1:] * signs, a[:, 1:], atol=2e-3, rtol=1e-3)


@needs_data
def test_components_from_a_sample_of_positions_are_close_to_those_from_all(extractor, section):
    other = warp(section, smooth_field(tuple(section.shape[2:]), 3.0))
    every, some = (FeatureMaps(extractor, positions=count) for count in (None, 2048))
    stages = (every.stage_maps(section), every.stage_maps(other))
    full = every.level_pair(stages, (section, other), (128, 128))
    sampled = some.level_pair(stages, (section, other), (128, 128))
    for a, b in zip(full, sampled, strict=True):
        # components of close eigenvalues may turn into each other: compare the spans, each
        # component from 8 times fewer positions almost wholly a mix of those from all
        every_k, some_k = (
            x[0, 1:].flatten(1) - x[0, 1:].flatten(1).mean(1, keepdim=True) for x in (a, b)
        )
        mix = torch.linalg.lstsq(every_k.T, some_k.T).solution
        left = (some_k.T - every_k.T @ mix).pow(2).sum(0) / some_k.T.pow(2).sum(0)
        assert float(left.max()) < 0.02
    loss = float(every.compare(full[1], full[0]))
    assert float(some.compare(sampled[1], sampled[0])) == pytest.approx(loss, rel=0.02)


@pytest.mark.parametrize("positions", [0, 15, 2.5, True])
def test_a_bad_number_of_sampled_positions_is_one_clear_error(extractor, positions):
    with pytest.raises(ValueError, match=r"^positions must be a whole number of positions >= 16"):
        FeatureMaps(extractor, positions=positions)


def test_the_feature_term_vanishes_for_identical_maps_and_grows_with_a_shift(extractor):
    image = torch.rand(1, 1, 64, 64)
    for distance in ("mse", "cosine", "ncc"):
        metric = FeatureMaps(extractor, distance=distance)
        maps = metric.level_maps(metric.stage_maps(image), image, (64, 64))
        same = float(metric.compare(maps, maps))
        # local NCC is 0, not 1, on channels flat in a window (dead features)
        assert same == pytest.approx(0.0, abs=1e-4 if distance != "ncc" else 0.02)
        assert float(metric.compare(torch.roll(maps, 3, dims=3), maps)) > same + 0.05


@pytest.mark.parametrize(
    "options, words",
    [
        (["--feature-weight", "-1"], "--feature-weight must be a finite number >= 0"),
        (["--pca", "500"], "--pca 500 asks for more components than the 113 feature channels"),
        (["--pca", "0"], "--pca must be a whole number of components >= 1"),
    ],
)
@needs_data
def test_bad_feature_options_are_one_line_exit_2_nothing_written(tmp_path, options, words):
    out = tmp_path / "out"
    command = [DEEPSIM, "register", str(ISBI / "01.png"), str(ISBI / "00.png"), "--optimise"]
    command += ["--metric", "deepsim+mse", "--features", "em-2d", "--out", str(out), *options]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and not out.exists()


def test_feature_options_on_another_metric_are_refused():
    with pytest.raises(ValueError, match=r"apply to deepsim-maps, deepsim\+mse, deepsim\+ncc"):
        build_metric("ncc", MetricInputs(feature_options=FeatureOptions()))


def test_picking_deepsim_to_optimise_runs_the_measured_variant_on_the_same_extractor(extractor):
    picked = build_metric("deepsim", MetricInputs(extractor))
    picked.metadata["features"] = "em-2d"
    runs = user_optimisation(picked, OptimiseConfig())
    assert runs.metric.name == DEEPSIM_OPTIMISED == "deepsim-seg+ncc"
    assert runs.metric.loss.network is extractor and runs.metric.loss.intensity is not None
    assert runs.metric.loss.static and runs.metric.metadata["features"] == "em-2d"
    # chosen encoder stages are honoured by the stage-based variant
    staged = build_metric("deepsim", MetricInputs(extractor, feature_levels=[2, 3]))
    runs = user_optimisation(staged, OptimiseConfig())
    assert runs.metric.name == DEEPSIM_STAGES_OPTIMISED
    assert runs.metric.loss.network is extractor and runs.metric.loss.levels == [2, 3]
    ncc = build_metric("ncc")
    assert user_optimisation(ncc, OptimiseConfig()).metric is ncc  # others run as picked
    # refining a model's field keeps the cosine (Dice 0.779 against 0.759 on ISBI 25:30)
    assert user_optimisation(picked, OptimiseConfig(), refine=True).metric is picked
