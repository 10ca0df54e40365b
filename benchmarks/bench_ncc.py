"""Local NCC, forward + backward, against MONAI's LocalNormalizedCrossCorrelationLoss.

Both compute the squared local NCC over a 9-voxel cubic window with zero padding.
Ours (``src_training.metrics.local_ncc``) standardises each image globally and computes,
from window means ``<.>``, ``cc = c^2 / (v_I v_J + eps)`` with ``c = <IJ> - <I><J>`` and
``v = max(<I^2> - <I>^2, 0)``; the loss is ``1 - mean(cc)``. MONAI (rectangular kernel)
computes the same from window sums ``S`` over ``N`` voxels:
``(S_IJ - S_I S_J / N)^2 + smooth_nr`` over
``max(S_II - S_I^2 / N, smooth_dr) * max(S_JJ - S_J^2 / N, smooth_dr)``, which is
``cc`` with ``eps = 0`` wherever both clamps are inactive; its loss is ``-mean(cc)``.
The values are compared with ``smooth_nr = 0``, ``smooth_dr = 1e-5`` (MONAI's default)
and our ``eps = 0`` on the standardised images, after adding Gaussian noise of standard
deviation 0.05 to the normalised images so that no window is flat (on flat windows the
two definitions differ by design, and MONAI's float32 sums cancel: see the check on
the raw volumes).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import monai
import torch
from monai.losses import LocalNormalizedCrossCorrelationLoss
from torch import Tensor

from benchmarks import data
from benchmarks.common import save, table, timeit
from benchmarks.reference import ncc_loss_autograd
from src_training.metrics import NCC, local_ncc
from src_training.metrics._common import _standardise

WINDOW = 9
NOISE = 0.05
ANCHOR = f"MONAI {monai.__version__} (anchor)"


def _inputs(case: str) -> tuple[Tensor, Tensor]:
    if case == "2D 8x1x512x512":
        images = torch.from_numpy(data.isbi().images)
        moving, fixed = images[0:8], images[1:9]
    else:
        moving, fixed = (torch.from_numpy(v) for v in data.brain_pair())
    generator = torch.Generator().manual_seed(0)
    noisy = [v + NOISE * torch.randn(v.shape, generator=generator) for v in (moving, fixed)]
    return noisy[0], noisy[1]


def _monai(ndim: int, reduction: str = "mean") -> LocalNormalizedCrossCorrelationLoss:
    return LocalNormalizedCrossCorrelationLoss(
        spatial_dims=ndim,
        kernel_size=WINDOW,
        kernel_type="rectangular",
        smooth_nr=0.0,
        smooth_dr=1e-5,
        reduction=reduction,
    )


def _forward_backward(loss: Callable[[Tensor, Tensor], Tensor], moving: Tensor, fixed: Tensor):
    def step() -> None:
        warped = moving.clone().requires_grad_(True)
        loss(warped, fixed).backward()

    return step


def _values(moving: Tensor, fixed: Tensor, ndim: int) -> dict[str, float]:
    """Mean cc of ours (eps 0 and the default 1e-5) and MONAI's on the standardised pair."""
    with torch.no_grad():
        monai_map = -_monai(ndim, "none")(_standardise(moving), _standardise(fixed))
        exact_map = local_ncc(moving, fixed, WINDOW, eps=0.0)
        monai_cc = monai_map.mean().item()
        exact = exact_map.mean().item()
        default = local_ncc(moving, fixed, WINDOW).mean().item()
    return {
        "monai_cc": monai_cc,
        "ours_cc_eps0": exact,
        "rel_diff_eps0": abs(exact - monai_cc) / abs(monai_cc),
        "max_abs_diff_eps0": (exact_map - monai_map).abs().max().item(),
        "ours_cc_default": default,
        "rel_diff_default": abs(default - monai_cc) / abs(monai_cc),
    }


def _raw_volume_check() -> dict[str, float]:
    """MONAI's and our largest cc on the raw brain volumes, whose background is flat."""
    moving, fixed = (torch.from_numpy(v) for v in data.brain_pair())
    with torch.no_grad():
        ours = local_ncc(moving, fixed, WINDOW)
        monai = -_monai(3, "none")(_standardise(moving), _standardise(fixed))
    return {
        "ours_max_cc": ours.max().item(),
        "monai_max_cc": monai.max().item(),
        "ours_mean_cc": ours.mean().item(),
        "monai_mean_cc": monai.mean().item(),
    }


def run(repeats_2d: int = 5, repeats_3d: int = 2) -> dict:
    rows = []
    values = {}
    for case, repeats in (("2D 8x1x512x512", repeats_2d), ("3D 1x1x160x192x224", repeats_3d)):
        moving, fixed = _inputs(case)
        ndim = moving.dim() - 2
        values[case] = _values(moving, fixed, ndim)
        implementations = {
            ANCHOR: _monai(ndim),
            "ours, before (conv box filter, autograd)": partial(ncc_loss_autograd, window=WINDOW),
            "ours": NCC(WINDOW),
        }
        timings = {
            name: timeit(_forward_backward(loss, moving, fixed), repeats)
            for name, loss in implementations.items()
        }
        anchor = timings[ANCHOR]["median_s"]
        for name, timing in timings.items():
            rows.append(
                {
                    "case": case,
                    "implementation": name,
                    **timing,
                    "speedup_vs_monai": anchor / timing["median_s"],
                }
            )
        print(f"{case}: {values[case]}", flush=True)
    record = save("ncc", rows, values=values, raw_3d=_raw_volume_check())
    print(table(rows, COLUMNS))
    return record


COLUMNS = [
    ("case", "case"),
    ("implementation", "implementation"),
    ("median_s", "median s"),
    ("min_s", "min s"),
    ("speedup_vs_monai", "× vs MONAI"),
    ("repeats", "repeats"),
    ("load", "load"),
]

if __name__ == "__main__":
    run()
