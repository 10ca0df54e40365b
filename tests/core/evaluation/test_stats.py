"""Paired statistics against a reference model: known values and edge cases."""

import numpy as np
import pytest
from scipy.stats import wilcoxon

from src_training.evaluation.stats import against_reference, cohens_d, stars, wilcoxon_p


def test_wilcoxon_p_matches_the_exact_distribution_by_hand():
    # all 5 differences positive: only 1 of the 2**5 sign patterns is as extreme
    assert wilcoxon_p([1.0, 2, 3, 4, 5], [0.0, 0, 0, 0, 0]) == pytest.approx(1 / 32)
    # ranks of |d| = .05 (negative) .1 .15 .2 .3 -> W- = 1; P(W- <= 1) = 2 / 32
    reference = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    model = reference - np.array([0.1, 0.2, -0.05, 0.3, 0.15])
    assert wilcoxon_p(reference, model) == pytest.approx(2 / 32)
    # one-sided in the reference's favour: reversed roles give the complement
    assert wilcoxon_p(model, reference) == pytest.approx(1 - 1 / 32)


def test_wilcoxon_p_agrees_with_scipy_and_drops_zero_differences():
    rng = np.random.default_rng(3)
    reference = rng.random(12)
    model = reference - rng.normal(0.05, 0.1, 12)
    model[4] = reference[4]  # a tie: dropped by zero_method="wilcox"
    expected = wilcoxon(reference - model, zero_method="wilcox", alternative="greater").pvalue
    assert wilcoxon_p(reference, model) == pytest.approx(expected)
    assert wilcoxon_p(np.delete(reference, 4), np.delete(model, 4)) == pytest.approx(expected)


def test_few_pairs_cannot_reach_significance():
    assert wilcoxon_p([1.0, 1, 1, 1], [0.0, 0, 0, 0]) == pytest.approx(1 / 16)
    assert stars(wilcoxon_p([1.0, 1, 1, 1], [0.0, 0, 0, 0])) == ""


def test_identical_scores_and_empty_input():
    assert wilcoxon_p([0.5, 0.6, 0.7], [0.5, 0.6, 0.7]) == 1.0
    assert np.isnan(wilcoxon_p([], []))
    with pytest.raises(ValueError, match="one length"):
        wilcoxon_p([1.0, 2.0], [1.0])


def test_cohens_d_is_the_paired_mean_over_sd():
    # differences 1, 2, 3: mean 2, sample sd 1
    assert cohens_d([1.0, 2, 3], [0.0, 0, 0]) == pytest.approx(2.0)
    assert cohens_d([0.0, 0, 0], [1.0, 2, 3]) == pytest.approx(-2.0)
    # shifting both models by a constant changes nothing
    assert cohens_d([11.0, 12, 13], [10.0, 10, 10]) == pytest.approx(2.0)
    assert cohens_d([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert cohens_d([1.0, 2.0], [0.0, 1.0]) == np.inf
    assert np.isnan(cohens_d([1.0], [0.0]))


def test_stars_follow_the_papers_levels():
    assert [stars(p) for p in (0.0005, 0.001, 0.005, 0.04, 0.05, 0.5, float("nan"))] == [
        "***",
        "**",
        "**",
        "*",
        "",
        "",
        "",
    ]


def test_against_reference_tests_every_other_model():
    scores = {"deepsim": [0.9] * 8, "ncc": [0.8] * 8, "mse": [0.9] * 8}
    result = against_reference(scores, "deepsim")
    assert sorted(result) == ["mse", "ncc"]
    assert result["ncc"]["p_value"] == pytest.approx(2**-8)
    assert result["ncc"]["stars"] == "**"
    assert result["ncc"]["cohens_d"] == np.inf
    assert result["mse"] == {"p_value": 1.0, "cohens_d": 0.0, "stars": ""}
