"""Registration latency per pair and Dice: our trained models against itk-elastix.

Anchor: elastix B-spline registration with the default parameter map
(``itk.ParameterObject.New().GetDefaultParameterMap("bspline")``: 4 resolutions,
256 iterations each, Mattes mutual information plus bending energy, 2048 random
samples), on the same pairs, through the project's baseline
(``src_training.evaluation.baselines.ElastixBSpline``, as ``deepsim evaluate --baseline elastix``).
Labels are carried by each method's own transform with nearest-neighbour interpolation
(transformix; ours ``warp_labels``) and scored with the project's Dice (mean over the
classes present, background included). Latency: from the two images in memory to the
transform and the warped moving image (ours: ``registration.predict`` under
``torch.inference_mode`` and ``warp``; elastix: ``elastix_registration_method``, which
also resamples the image).
The first of our pairs is run once more beforehand as a warm-up (in 3D a 32³ pair).
"Ours, before" is the same network called as before the channels-last change
(``benchmarks/reference.py``); "bf16 autocast" is ``predict(..., precision="bf16")``, an
opt-in that trades about 1% of the displacement's precision for speed. "Smaller
network" is the DeepSim model of ``scripts/reproduce.py`` (channels 16,32,64, a quarter
of the multiply-adds of 32,64,128, trained for 300 steps), where that run exists.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benchmarks import data
from benchmarks.common import RUNS, load, save, table
from benchmarks.reference import predict_contiguous
from benchmarks.workloads import register_pair
from src_training.evaluation.baselines import ElastixBSpline
from src_training.metrics.dice import mean_dice
from src_training.networks.modelio import load_model
from src_training.networks.models import RegistrationNet
from src_training.registration.inference import predict
from src_training.spatial.transforms import warp_labels

ANCHOR = "elastix B-spline (anchor)"
BEFORE = "ours, before (NCHW layout)"
BF16 = "ours, bf16 autocast (opt-in)"
SMALL = "ours, smaller network"
METHODS = ("ours", BF16, BEFORE)
SMALL_CHANNELS = (16, 32, 64)  # the reproduction report's models
CASES = {
    "2D 512² isbi2012_em": ("isbi", [(26, 25), (27, 26), (28, 27), (29, 28)]),
    "2D 1022×1024 t98g_phase": ("t98g", [(21, 20), (22, 21), (23, 22)]),
}
CHANNELS_3D = (32, 64, 128)  # the architecture of the trained 2D models


def elastix(moving: np.ndarray, fixed: np.ndarray, labels: np.ndarray | None):
    """Register ``(1, C, *spatial)`` arrays with the project's elastix baseline.

    Return the seconds of the registration and the moving labels it warped.
    """
    spatial = moving.shape[2:]
    moving_labels = labels if labels is not None else np.zeros(spatial, np.int64)
    result = ElastixBSpline()(moving[0], fixed[0], moving_labels)
    return result.seconds, result.warped_labels if labels is not None else None


def ours(network: RegistrationNet, moving: np.ndarray, fixed: np.ndarray, labels, method="ours"):
    """The same for our network on ``(1, C, *spatial)`` arrays (``method``: one of METHODS)."""
    m, f = torch.from_numpy(moving), torch.from_numpy(fixed)
    predictor = {
        "ours": predict,
        BF16: partial(predict, precision="bf16"),
        BEFORE: predict_contiguous,
    }
    start = time.perf_counter()
    disp, _ = register_pair(network, m, f, predictor[method])
    seconds = time.perf_counter() - start
    if labels is None:
        return seconds, None
    return seconds, warp_labels(torch.from_numpy(labels)[None, None], disp)[0, 0].numpy()


def _row(case: str, method: str, model: str, seconds: list[float], dice: list[float]) -> dict:
    return {
        "case": case,
        "method": method,
        "model": model,
        "pairs": len(seconds),
        "latency_s": statistics.median(seconds),
        "dice": float(np.mean(dice)) if dice else None,
        "load": load(),
    }


def run_2d(case: str, model_path: Path, small_path: Path | None = None) -> list[dict]:
    name, pairs = CASES[case]
    dataset = getattr(data, name)()
    images, labels = dataset.images, dataset.labels
    networks = dict.fromkeys(METHODS, load_model(model_path).network)
    if small_path is not None and small_path.is_file():
        networks[SMALL] = load_model(small_path).network
    for method, network in networks.items():  # warm-up
        predictor = "ours" if method == SMALL else method
        ours(network, images[pairs[0][0]][None], images[pairs[0][1]][None], None, predictor)
    results: dict[str, tuple[list[float], list[float]]] = {
        name: ([], []) for name in (ANCHOR, *networks, "identity")
    }
    for m, f in pairs:
        t, warped = elastix(images[m][None], images[f][None], labels[m])
        results[ANCHOR][0].append(t)
        results[ANCHOR][1].append(mean_dice(warped, labels[f]))
        for method, network in networks.items():
            predictor = "ours" if method == SMALL else method
            t, warped = ours(network, images[m][None], images[f][None], labels[m], predictor)
            results[method][0].append(t)
            results[method][1].append(mean_dice(warped, labels[f]))
        results["identity"][1].append(mean_dice(labels[m], labels[f]))
    described = {method: f"{model_path} (trained)" for method in METHODS}
    described[SMALL] = f"{small_path} (trained, channels 16,32,64)"
    return [
        _row(case, ANCHOR, "default B-spline map", *results[ANCHOR]),
        *(_row(case, method, described[method], *results[method]) for method in networks),
        _row(case, "identity (no registration)", "–", [0.0], results["identity"][1]),
    ]


def run_3d() -> list[dict]:
    case = "3D 160×192×224 brain_mri_3d → MNI152"
    moving, fixed = data.brain_pair()
    torch.manual_seed(0)
    network = RegistrationNet(3, channels=CHANNELS_3D).eval()
    warm_up = np.random.default_rng(0).random((1, 1, 32, 32, 32), np.float32)
    model = f"untrained, channels {','.join(map(str, CHANNELS_3D))}; Dice not measured"
    rows = []
    for method in METHODS:
        ours(network, warm_up, warm_up, None, method)
        rows.append(_row(case, method, model, [ours(network, moving, fixed, None, method)[0]], []))
    small = RegistrationNet(3, channels=SMALL_CHANNELS).eval()
    ours(small, warm_up, warm_up, None)
    seconds = [ours(small, moving, fixed, None)[0]]
    rows.append(_row(case, SMALL, "untrained, channels 16,32,64; Dice not measured", seconds, []))
    t_elastix, _ = elastix(moving, fixed, None)
    return [_row(case, ANCHOR, "default B-spline map; Dice not measured", [t_elastix], []), *rows]


def run(isbi_model: Path | None = None, t98g_model: Path | None = None) -> dict:
    models = {
        "2D 512² isbi2012_em": isbi_model or RUNS / "isbi" / "deepsim.pt",
        "2D 1022×1024 t98g_phase": t98g_model or RUNS / "t98g" / "deepsim.pt",
    }
    rows = []
    for case, path in models.items():
        small = RUNS / "reproduction" / CASES[case][0] / "deepsim.pt"
        rows += run_2d(case, path, small)
        print(table([r for r in rows if r["case"] == case], COLUMNS), flush=True)
    rows += run_3d()
    by_case: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["method"]] = row
    for row in rows:
        anchor = by_case[row["case"]][ANCHOR]
        if row["method"] in (*METHODS, SMALL):
            row["speedup_vs_elastix"] = anchor["latency_s"] / row["latency_s"]
            if row["dice"] is not None:
                row["dice_minus_elastix"] = row["dice"] - anchor["dice"]
    record = save("registration", rows)
    print(table(rows, COLUMNS))
    return record


COLUMNS = [
    ("case", "case"),
    ("method", "method"),
    ("model", "model / settings"),
    ("pairs", "pairs"),
    ("latency_s", "s per pair (median)"),
    ("speedup_vs_elastix", "× faster than elastix"),
    ("dice", "Dice"),
    ("dice_minus_elastix", "Dice − elastix"),
    ("load", "load"),
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isbi-model", type=Path, help="default ../runs/isbi/deepsim.pt")
    parser.add_argument("--t98g-model", type=Path, help="default ../runs/t98g/deepsim.pt")
    arguments = parser.parse_args()
    run(arguments.isbi_model, arguments.t98g_model)
