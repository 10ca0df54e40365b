"""DeepSim on a segmentation network's output (deepsim-seg): values, extract-then-warp, recovery."""

import pytest
import torch
from test_feature_maps import MARGIN, needs_data, smooth_field

from src_training.metrics.feature_maps import FeatureOptions
from src_training.metrics.intensity import NCC
from src_training.metrics.registry import MetricInputs, build_metric
from src_training.metrics.semantic import SEGMENTATION_WEIGHT, SegmentationSimilarity
from src_training.optimisation import OptimiseConfig, optimise_pair
from src_training.optimisation.static import is_static
from src_training.spatial.transforms import warp


class Threshold(torch.nn.Module):
    """A 'segmentation network' with a known output: class 1 where the image is bright."""

    kind = "segmentation"
    num_classes = 2

    def features(self, x):
        return [x]

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 8.0 * (x - 0.5)], dim=1)


def test_the_loss_is_the_mean_squared_difference_of_the_class_probabilities():
    metric = SegmentationSimilarity(Threshold())
    zeros, ones = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    assert float(metric(zeros, zeros)) == pytest.approx(0.0, abs=1e-7)
    p0, p1 = torch.sigmoid(torch.tensor(-4.0)), torch.sigmoid(torch.tensor(4.0))
    # two classes: (p1 - p0)^2 on each, summed, halved
    assert float(metric(zeros, ones)) == pytest.approx(float((p1 - p0) ** 2), rel=1e-5)
    half = torch.cat([zeros[..., :4], ones[..., 4:]], dim=-1)
    assert float(metric(half, ones)) == pytest.approx(float((p1 - p0) ** 2) / 2, rel=1e-5)


def test_it_optimises_extract_then_warp_and_refuses_encoder_levels():
    metric = build_metric("deepsim-seg", MetricInputs(Threshold()))
    assert is_static(metric.loss)
    with pytest.raises(ValueError, match="leave out --feature-levels"):
        SegmentationSimilarity(Threshold(), levels=[1])


@needs_data
def test_extract_then_warp_equals_warp_then_extract_for_a_whole_cell_translation(
    extractor, section
):
    metric = SegmentationSimilarity(extractor)
    shape = tuple(section.shape[2:])
    shift = torch.zeros(1, 2, *shape)
    shift[:, 0] = 8.0  # a whole cell of the deepest stage: the network commutes with it
    shifted = warp(section, shift)
    (fixed,), (moving,) = metric.stage_maps(shifted), metric.stage_maps(section)
    levels = metric.level_pair(([fixed], [moving]), (shifted, section), shape)
    inner = (slice(None), slice(None), slice(MARGIN, -MARGIN - 8), slice(MARGIN, -MARGIN))
    then_warped = warp(levels[1], shift)[inner]
    assert (then_warped - levels[0][inner]).abs().mean() < 0.02
    assert float(metric.compare(warp(levels[1], shift), levels[0])) < 0.2 * float(
        metric.compare(levels[1], levels[0])
    )


def test_the_combined_metric_adds_the_intensity_term_to_the_weighted_probability_term():
    torch.manual_seed(0)
    a, b = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    alone = float(SegmentationSimilarity(Threshold())(a, b))
    combined = build_metric("deepsim-seg+ncc", MetricInputs(Threshold()))
    expected = float(NCC()(a, b)) + SEGMENTATION_WEIGHT * alone
    assert float(combined(a, b)) == pytest.approx(expected, rel=1e-5)
    # extract-then-warp: the level stacks carry the raw image first, then the probabilities
    metric = combined.loss
    stages = (metric.stage_maps(b), metric.stage_maps(a))
    fixed, moving = metric.level_pair(stages, (b, a), (16, 16))
    assert fixed.shape[1] == 3 and torch.equal(fixed[:, :1], b)
    assert float(metric.compare(moving, fixed)) == pytest.approx(expected, rel=1e-5)
    weighted = FeatureOptions(weight=0.5)
    half = build_metric("deepsim-seg+ncc", MetricInputs(Threshold(), feature_options=weighted))
    assert float(half(a, b)) == pytest.approx(float(NCC()(a, b)) + 0.5 * alone, rel=1e-5)


def test_the_combined_metric_takes_only_a_weight_of_the_feature_options():
    pca = FeatureOptions(pca=2)
    with pytest.raises(ValueError, match="it takes --feature-weight alone"):
        build_metric("deepsim-seg+ncc", MetricInputs(Threshold(), feature_options=pca))
    with pytest.raises(ValueError, match="--feature-weight must be a finite number > 0, got 0"):
        build_metric(
            "deepsim-seg", MetricInputs(Threshold(), feature_options=FeatureOptions(weight=0))
        )
    for bad in (-1.0, float("inf")):
        given = FeatureOptions(weight=bad)
        with pytest.raises(
            ValueError, match=rf"--feature-weight must be a finite number >= 0, got {bad}"
        ):
            build_metric("deepsim-seg+ncc", MetricInputs(Threshold(), feature_options=given))
    # 0 beside NCC is NCC alone
    zero = build_metric(
        "deepsim-seg+ncc", MetricInputs(Threshold(), feature_options=FeatureOptions(weight=0))
    )
    a, b = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    assert float(zero(a, b)) == pytest.approx(float(NCC()(a, b)), rel=1e-6)


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("name", ["deepsim-seg", "deepsim-seg+ncc"])
def test_it_recovers_a_known_smooth_deformation_of_a_real_section(extractor, section, name):
    truth = smooth_field(tuple(section.shape[2:]))
    fixed = warp(section, truth)
    metric = build_metric(name, MetricInputs(extractor))
    config = OptimiseConfig(levels=3, iterations=(60, 40, 20), lam=0.25, patience=20)
    found = optimise_pair(fixed, section, metric, config).displacement
    inner = (slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    error = torch.linalg.vector_norm(found - truth, dim=1)[inner].mean()
    start = torch.linalg.vector_norm(truth, dim=1)[inner].mean()
    assert error < 0.5 < start, (float(error), float(start))


class Inverted(Threshold):
    """The same segmentation in a modality of inverted contrast: class 1 where it is dark."""

    def forward(self, x):
        return super().forward(1.0 - x)


def test_one_extractor_per_image_segments_each_image_with_its_own():
    metric = SegmentationSimilarity(Threshold(), moving_extractor=Inverted())
    image = torch.zeros(1, 1, 8, 8)
    image[..., 2:6, 2:6] = 1.0
    # the moving image shows the same square in inverted contrast: alike for the pair of
    # extractors, opposite for the fixed image's extractor alone
    assert float(metric(1.0 - image, image)) == pytest.approx(0.0, abs=1e-7)
    p0, p1 = torch.sigmoid(torch.tensor(-4.0)), torch.sigmoid(torch.tensor(4.0))
    alone = SegmentationSimilarity(Threshold())(1.0 - image, image)
    assert float(alone) == pytest.approx(float((p1 - p0) ** 2), rel=1e-5)
    torch.testing.assert_close(
        metric.moving_stage_maps(1.0 - image)[0], metric.stage_maps(image)[0]
    )
    assert not metric.moving_network.training and not metric.train().moving_network.training


def test_one_extractor_per_image_recovers_a_shift_across_inverted_contrast():
    grid = torch.stack(torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij"))

    def blob(centre):
        return torch.exp(-((grid - torch.tensor(centre).view(2, 1, 1)) ** 2).sum(0) / 60)

    fixed = blob((24.0, 24.0))[None, None]
    moving = 1.0 - blob((26.0, 21.0))[None, None]  # shifted by (2, -3) px, contrast inverted
    metric = build_metric("deepsim-seg", MetricInputs(Threshold(), moving_extractor=Inverted()))
    config = OptimiseConfig(levels=2, iterations=(60, 60), grid_spacing=8, lam=0.1)
    shift = optimise_pair(fixed, moving, metric, config).displacement
    centre = shift[0, :, 20:29, 20:29].mean(dim=(1, 2))
    torch.testing.assert_close(centre, torch.tensor([2.0, -3.0]), atol=0.5, rtol=0)


def test_a_second_extractor_is_refused_for_other_metrics_and_other_classes():
    with pytest.raises(ValueError, match="one extractor per image applies to deepsim-seg"):
        build_metric("deepsim", MetricInputs(Threshold(), moving_extractor=Threshold()))
    other = Threshold()
    other.num_classes = 3
    with pytest.raises(ValueError, match="segment 2 and 3 classes"):
        SegmentationSimilarity(Threshold(), moving_extractor=other)
