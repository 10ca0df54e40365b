"""`deepsim evaluate` statistics, HD95, noise, figures and baselines; `deepsim curves`."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from src_training.cli import main
from src_training.data.datasets import load_dataset
from src_training.evaluation.scoring import (
    Registered,
    hd95_per_class,
    identity_method,
    score_pairs,
    summarise,
)
from src_training.networks.modelio import save_model
from src_training.networks.models import RegistrationNet
from src_training.training.trainer import LOG_FIELDS

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
ISBI = DATA / "isbi2012_em"
C2C12 = DATA / "small_timelapses" / "c2c12_phase_data_small.npz"
FIGURES = ("dice_boxplot.png", "qualitative.png", "jacobian.png")
needs_data = pytest.mark.skipif(
    not ISBI.is_dir(), reason="../shared/data is not beside the checkout"
)
pytestmark = pytest.mark.usefixtures("single_thread")


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _model(path, metric, seed):
    torch.manual_seed(seed)
    return str(save_model(path, RegistrationNet(2, channels=(4, 8)), {"metric": metric}))


def _evaluate(data, frames, models, *options, out):
    args = ["evaluate", str(data), "--frames", frames, "--models", *models, *options]
    return main([*args, "--out", str(out), "--device", "cpu"])


@pytest.mark.slow
@needs_data
def test_statistics_hd95_noise_and_figures_on_real_em(tmp_path, capsys):
    models = [_model(tmp_path / "a.pt", "mse", 0), _model(tmp_path / "b.pt", "ncc", 1)]
    options = ["--baseline", "identity", "--reference", "a", "--hd95", "--noise", "0.1"]
    figures = ["--figures", "--zoom", "300,100,396,196", "--grid-spacing", "32"]
    out = tmp_path / "eval"
    assert _evaluate(ISBI, "25:28", models, *options, *figures, out=out) == 0
    summary = {row["model"]: row for row in _rows(out / "summary.csv")}
    assert list(summary) == ["identity", "a", "b"]
    assert {row["noise"] for row in summary.values()} == {"0.1"}
    assert summary["a"]["p_value"] == summary["a"]["cohens_d"] == summary["a"]["stars"] == ""
    for name in ("identity", "b"):
        # 2 pairs: the exact one-sided p is at least 1/4, never significant
        assert float(summary[name]["p_value"]) >= 0.25 and summary[name]["stars"] == ""
        assert summary[name]["cohens_d"] != ""
    pairs = _rows(out / "pairs.csv")
    assert len(pairs) == 6 and {p["noise"] for p in pairs} == {"0.1"}
    labels = load_dataset(ISBI, frames=slice(25, 28)).labels
    identity = [p for p in pairs if p["model"] == "identity"]
    for row in identity:  # unregistered: the HD95 of the label maps themselves
        moving, fixed = int(row["moving"]), int(row["fixed"])
        expected = np.mean(list(hd95_per_class(labels[moving], labels[fixed]).values()))
        assert float(row["hd95"]) == pytest.approx(expected)
    assert float(summary["identity"]["hd95"]) == pytest.approx(
        np.mean([float(p["hd95"]) for p in identity])
    )
    for name in FIGURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) >= 200
    with Image.open(out / "qualitative.png") as image:
        width, height = image.size
    assert width > 2 * height  # 5 columns, 2 rows (the zoom)
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[-3:] == ["hd95", "p", "d"]
    assert "2 pairs, noise 0.1" in printed and "qualitative.png" in printed
    # the same command refuses to overwrite the figures
    assert _evaluate(ISBI, "25:28", models, *options, *figures, out=out) == 2
    assert "already holds" in capsys.readouterr().err


@needs_data
def test_noise_is_seeded_and_the_same_for_every_model(tmp_path):
    model = _model(tmp_path / "m.pt", "mse", 0)
    twin = _model(tmp_path / "twin.pt", "mse", 0)  # the same weights under another name

    def sdlogj(seed, out):
        options = ["--noise", "0.2", "--seed", str(seed)]
        assert _evaluate(C2C12, "0:3", [model, twin], *options, out=tmp_path / out) == 0
        rows = _rows(tmp_path / out / "pairs.csv")
        return [[r["sdlogj"] for r in rows if r["model"] == name] for name in ("m", "twin")]

    first, again, other = sdlogj(1, "s1"), sdlogj(1, "again"), sdlogj(2, "s2")
    assert first[0] == first[1]  # both models saw the same noisy images
    assert first == again and first[0] != other[0]
    assert first[0] != sdlogj(0, "s0")[0]


def test_figures_of_3d_volumes_show_the_middle_slice(tmp_path):
    z, y, x = np.mgrid[:12, :32, :24]
    balls = [
        ((z - 6) ** 2 + (y - c) ** 2 + (x - 12) ** 2 < 25).astype(np.float32) for c in (14, 16)
    ]
    np.savez(tmp_path / "vol.npz", images=np.stack(balls), labels=np.stack(balls).astype(np.uint8))
    model = str(save_model(tmp_path / "m3.pt", RegistrationNet(3, channels=(4, 8)), {}))
    args = ["evaluate", str(tmp_path / "vol.npz"), "--ndim", "3", "--models", model, "--figures"]
    out = tmp_path / "eval"
    # the zoom lies in the 32x24 slice; a rectangle reaching row 30 of a 12-deep axis is fine
    assert main([*args, "--zoom", "2,2,30,20", "--out", str(out), "--device", "cpu"]) == 0
    assert all((out / name).is_file() for name in FIGURES)
    assert main([*args, "--zoom", "2,2,20,30", "--out", str(tmp_path / "e2")]) == 2


def _disc_stack(path):
    """Three frames of a smooth disc moving 2 pixels right per frame; labels: the disc."""
    rows, cols = np.mgrid[:64, :64]
    frames = [((rows - 32) ** 2 + (cols - c) ** 2 < 12**2).astype(np.float32) for c in (30, 32, 34)]
    images = np.stack([ndimage.gaussian_filter(f, 1.5) for f in frames])
    np.savez(path, images=images, labels=np.stack(frames).astype(np.uint8))
    return path


@pytest.mark.slow
def test_elastix_and_identity_rows_through_the_cli(tmp_path, capsys):
    pytest.importorskip("itk", reason="itk-elastix is not installed (extra: baselines)")
    data = _disc_stack(tmp_path / "discs.npz")
    out = tmp_path / "eval"
    args = ["evaluate", str(data), "--baseline", "identity", "--baseline", "elastix"]
    assert main([*args, "--reference", "elastix", "--figures", "--out", str(out)]) == 0
    summary = {row["model"]: row for row in _rows(out / "summary.csv")}
    assert list(summary) == ["identity", "elastix"]
    assert summary["elastix"]["metric"] == "bspline"
    assert float(summary["elastix"]["dice"]) > float(summary["identity"]["dice"]) + 0.02
    assert float(summary["elastix"]["seconds_per_pair"]) > 0
    assert float(summary["identity"]["cohens_d"]) > 0  # elastix is better on both pairs
    assert all((out / name).is_file() for name in FIGURES)
    assert "itk-elastix 0." in capsys.readouterr().out


def test_a_baseline_failing_on_one_pair_leaves_the_others_scored(tmp_path, capsys, monkeypatch):
    from src_training.engine import evaluation

    calls = []

    def fails_on_the_second_pair(moving, fixed, moving_labels):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError(
                "/src/itkElastixRegistrationMethod.hxx:389:\n"
                "ITK ERROR: ElastixRegistrationMethod(0x55d0c1a2): Internal elastix error: See "
                "elastix log (use LogToConsoleOn() or LogToFileOn())."
            )
        return identity_method(moving, fixed, moving_labels)

    monkeypatch.setattr(evaluation, "identity_method", fails_on_the_second_pair)
    out = tmp_path / "eval"
    args = ["evaluate", str(C2C12), "--frames", "0:4", "--baseline", "identity"]
    options = ["--optimise", "mse", "--iterations", "2", "--figures", "--out", str(out)]
    assert main([*args, *options]) == 0
    assert all((out / name).is_file() for name in FIGURES)
    reason = "Internal elastix error: See elastix log (use LogToConsoleOn() or LogToFileOn())."
    pairs = [row for row in _rows(out / "pairs.csv") if row["model"] == "identity"]
    assert [row["failed"] for row in pairs] == ["", reason, ""]
    assert pairs[1]["dice"] == "" and all(float(pairs[k]["dice"]) > 0 for k in (0, 2))
    summary = {row["model"]: row for row in _rows(out / "summary.csv")}
    assert summary["identity"]["n_pairs"] == "2" and summary["identity"]["n_failed"] == "1"
    expected = np.mean([float(pairs[k]["dice"]) for k in (0, 2)])
    assert float(summary["identity"]["dice"]) == pytest.approx(expected)
    named = f"{pairs[1]['moving_name']}->{pairs[1]['fixed_name']}"
    assert summary["identity"]["failed"] == f"{named}: {reason}"
    assert summary["opt-mse"]["n_pairs"] == "3" and summary["opt-mse"]["failed"] == ""
    shown = f"identity failed on {named.replace('->', ' -> ')}: {reason}"
    assert shown in capsys.readouterr().out


def test_a_non_finite_field_is_a_failed_pair():
    images = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    labels = (images[:, 0] > 0.5).astype(np.int64)

    def diverges(moving, fixed, moving_labels):
        return Registered(torch.full((1, 2, 8, 8), float("nan")), 0.1)

    rows = score_pairs(images, labels, [(0, 1), (1, 0)], diverges, [0, 1]).rows
    assert [row["failed"] for row in rows] == [
        "the displacement field is not finite (the loss became NaN)"
    ] * 2
    summary = summarise(rows)
    assert summary["n_pairs"] == 0 and summary["n_failed"] == 2 and np.isnan(summary["dice"])


def _log(path, dice):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for step, value in enumerate(dice, start=1):
            writer.writerow({"step": step, "seconds": f"{step * 0.5:.3f}", "loss": 1 - value})
            writer.writerow({"step": step, "seconds": f"{step * 0.6:.3f}", "val_dice": value})
    return str(path)


def test_curves_plots_every_run(tmp_path, capsys):
    logs = [_log(tmp_path / "ncc.csv", [0.5, 0.6]), _log(tmp_path / "deepsim.csv", [0.6, 0.7])]
    out = tmp_path / "convergence.png"
    assert main(["curves", *logs, "--out", str(out), "--names", "NCC", "DeepSim"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] >= 200
    assert "2 run(s)" in capsys.readouterr().out
    assert main(["curves", *logs, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["curves", *logs, "--out", str(out), "--overwrite"]) == 0
