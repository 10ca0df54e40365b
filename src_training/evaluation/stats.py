"""Paired statistics of one model against a reference model, as in the paper's Figure 2.

Both functions take the per-pair scores of the two models on the same test pairs, in
the same order; the differences ``reference - model`` are what is tested:

* :func:`wilcoxon_p`: one-sided Wilcoxon signed-rank test, alternative "the reference
  scores higher" (``scipy.stats.wilcoxon`` with ``zero_method="wilcox"``: pairs with a
  zero difference are dropped). With ``n`` pairs the smallest attainable p is ``2**-n``
  (exact test), so fewer than 5 pairs can never reach p < 0.05.
* :func:`cohens_d`: paired Cohen's d, ``mean(diff) / sd(diff)`` with the sample standard
  deviation (``ddof=1``); positive when the reference is better.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STAR_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))


def _differences(reference: Sequence[float], model: Sequence[float]) -> np.ndarray:
    ref, other = np.asarray(reference, dtype=float), np.asarray(model, dtype=float)
    if ref.shape != other.shape or ref.ndim != 1:
        raise ValueError(
            f"paired scores need two vectors of one length, got {ref.shape} and {other.shape}"
        )
    return ref - other


def wilcoxon_p(reference: Sequence[float], model: Sequence[float]) -> float:
    """One-sided Wilcoxon signed-rank p-value that ``reference`` beats ``model``.

    Parameters
    ----------
    reference, model : sequence of float
        Paired per-pair scores (e.g. mean Dice) of the two models.

    Returns
    -------
    float
        The p-value; 1.0 when every difference is zero (no evidence either way) and
        NaN when there are no pairs.
    """
    diff = _differences(reference, model)
    if diff.size == 0:
        return float("nan")
    if not diff.any():
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(diff, zero_method="wilcox", alternative="greater").pvalue)


def cohens_d(reference: Sequence[float], model: Sequence[float]) -> float:
    """Paired Cohen's d of ``reference - model``: ``mean(diff) / sd(diff)`` (ddof=1).

    Parameters
    ----------
    reference, model : sequence of float
        Paired per-pair scores of the two models.

    Returns
    -------
    float
        The effect size; 0.0 when every difference is zero, ``±inf`` when all
        differences are equal but not zero, NaN with fewer than 2 pairs.
    """
    diff = _differences(reference, model)
    if diff.size < 2:
        return float("nan")
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    if sd == 0:
        return 0.0 if mean == 0 else float(np.copysign(np.inf, mean))
    return mean / sd


def stars(p: float) -> str:
    """Significance stars of a p-value: ``***`` < .001, ``**`` < .01, ``*`` < .05, else ``""``.

    Parameters
    ----------
    p : float
        A p-value (NaN gives ``""``).

    Returns
    -------
    str
        The stars.
    """
    return next((mark for level, mark in STAR_LEVELS if p < level), "")


def against_reference(
    scores: dict[str, Sequence[float]], reference: str
) -> dict[str, dict[str, float | str]]:
    """Test every model against the reference on paired per-pair scores.

    Parameters
    ----------
    scores : dict
        ``{model name: per-pair scores}``, every list over the same pairs in one order.
    reference : str
        The key of the reference model.

    Returns
    -------
    dict
        ``{model name: {"p_value", "cohens_d", "stars"}}`` for every model but the
        reference.
    """
    ref = scores[reference]
    results: dict[str, dict[str, float | str]] = {}
    for name, values in scores.items():
        if name == reference:
            continue
        p = wilcoxon_p(ref, values)
        results[name] = {"p_value": p, "cohens_d": cohens_d(ref, values), "stars": stars(p)}
    return results
