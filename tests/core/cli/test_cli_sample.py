"""The whole ``deepsim`` command line on the built-in synthetic sample (no shared data needed).

Every clone runs these: the sample is written to TIFF files, then the installed command
trains an extractor, trains a DeepSim model, registers a pair and a series, evaluates
and shows a model, as a user would. The series is also registered through the
Register widget's job, and both must give the same fields, Dice and folding.
"""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_deepsim._jobs.job import Job
from napari_deepsim._jobs.register import run
from src_training.data.samples import noisy_cell_sequence

pytestmark = pytest.mark.slow

DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
TINY = ["--channels", "4,8", "--crop", "32", "--batch-size", "2", "--device", "cpu"]


def _deepsim(*args: object) -> str:
    proc = subprocess.run([DEEPSIM, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    seq = noisy_cell_sequence(n_frames=6, size=48)
    images = (seq.images * 1000).astype(np.float32)
    tifffile.imwrite(folder / "frames.tif", images)
    tifffile.imwrite(folder / "labels.tif", seq.labels.astype(np.uint8))
    for t in (0, 1):
        tifffile.imwrite(folder / f"frame{t}.tif", images[t])
        tifffile.imwrite(folder / f"labels{t}.tif", seq.labels[t].astype(np.uint8))
    data = [folder / "frames.tif", "--label-file", folder / "labels.tif"]
    features = folder / "features.pt"
    model = folder / "deepsim.pt"
    _deepsim("train-features", *data, "--frames", "0:4", "--steps", "4", *TINY, "--out", features)
    _deepsim(
        "train", *data, "--frames", "0:4", "--val-frames", "4:6", "--metric", "deepsim",
        "--features", features, "--steps", "4", *TINY, "--out", model,
    )  # fmt: skip
    return {"folder": folder, "data": data, "features": features, "model": model, "seq": seq}


def test_training_writes_models_that_info_describes(runs):
    out = _deepsim("info", runs["model"])
    assert "registration model, 2D" in out
    assert "metric: deepsim" in out
    assert f"features: {runs['features'].resolve()}" in out
    assert "features model, 2D" in _deepsim("info", runs["features"])


def test_register_a_pair_writes_every_output_and_scores_dice(runs):
    folder = runs["folder"]
    out = _deepsim(
        "register", "--model", runs["model"], folder / "frame0.tif", folder / "frame1.tif",
        "--labels", folder / "labels1.tif", "--fixed-labels", folder / "labels0.tif",
        "--out", folder / "pair",
    )  # fmt: skip
    assert "Dice (labels1.tif vs labels0.tif)" in out
    field = np.load(folder / "pair" / "displacement.npz")["displacement"]
    assert field.shape == (2, 48, 48)
    warped = tifffile.imread(folder / "pair" / "warped.tif")
    assert warped.shape == (48, 48)
    assert (folder / "pair" / "warped_labels1.tif").is_file()


def test_evaluate_puts_the_model_beside_identity(runs):
    out = _deepsim(
        "evaluate", *runs["data"], "--frames", "4:6", "--models", runs["model"],
        "--baseline", "identity", "--device", "cpu", "--out", runs["folder"] / "eval",
    )  # fmt: skip
    rows = [line.split()[0] for line in out.splitlines()[1:3]]
    assert rows == ["identity", "deepsim"]
    assert (runs["folder"] / "eval" / "summary.csv").is_file()


def test_series_through_the_cli_and_the_register_widget_job_agree(runs):
    folder = runs["folder"]
    out = _deepsim(
        "register", "--model", runs["model"], "--series", folder / "frames.tif",
        "--labels", folder / "labels.tif", "--reference", "2", "--device", "cpu",
        "--out", folder / "series",
    )  # fmt: skip
    fields = np.load(folder / "series" / "displacements.npz")["displacement"]
    folding = float(out.split("folding ")[1].split(" %")[0])
    dice_after = float(out.split("before -> ")[1].split(" after")[0])
    frames = tifffile.imread(folder / "frames.tif")
    labels = runs["seq"].labels.astype(np.int64)
    job = Job(
        fixed=frames, moving=frames, fixed_name="frames", moving_name="frames",
        model=str(runs["model"]), device="cpu", spacing=8, stack=True, reference=2,
        moving_labels=labels, fixed_labels=labels, grid=False, checkerboard=False,
    )  # fmt: skip
    stages = run(job)
    while True:
        try:
            next(stages)
        except StopIteration as done:
            result = done.value
            break
    np.testing.assert_allclose(result.field, fields, atol=1e-5)
    assert not np.allclose(fields[0], 0)  # a real field, and the reference's is zero
    np.testing.assert_array_equal(fields[2], 0)
    assert result.folding_percent == pytest.approx(folding, abs=5e-4)
    assert result.dice[1] == pytest.approx(dice_after, abs=5e-5)


def _dice(out: str) -> tuple[float, float]:
    before, after = out.split("): ")[1].split(" after")[0].split(" before -> ")
    return float(before), float(after)


def test_optimise_a_pair_without_a_model(runs):
    folder = runs["folder"]
    out = _deepsim(
        "register", "--optimise", "--metric", "mse", "--iterations", "40,20",
        folder / "frame0.tif", folder / "frame1.tif", "--labels", folder / "labels1.tif",
        "--fixed-labels", folder / "labels0.tif", "--device", "cpu", "--out", folder / "opt",
    )  # fmt: skip
    assert "iterations of mse" in out
    before, after = _dice(out)
    assert after > before + 0.01
    assert np.load(folder / "opt" / "displacement.npz")["displacement"].shape == (2, 48, 48)


def test_refining_a_model_starts_from_its_prediction_and_ends_no_worse(runs):
    folder = runs["folder"]
    args = [folder / "frame0.tif", folder / "frame1.tif", "--labels", folder / "labels1.tif"]
    args += ["--fixed-labels", folder / "labels0.tif", "--device", "cpu"]
    plain = _deepsim("register", "--model", runs["model"], *args, "--out", folder / "plain")
    refined = _deepsim(
        "register", "--model", runs["model"], "--optimise", "--metric", "mse",
        "--iterations", "40,20", *args, "--out", folder / "refined",
    )  # fmt: skip
    assert "refining the model" in refined
    assert _dice(refined)[1] >= _dice(plain)[1] - 0.005
    loss_before, loss_after = refined.split("loss ")[1].split(")")[0].split(" -> ")
    assert float(loss_after) <= float(loss_before)


def test_evaluate_puts_optimisation_and_refinement_rows_in_one_table(runs):
    out = _deepsim(
        "evaluate", *runs["data"], "--frames", "4:6", "--models", runs["model"],
        "--baseline", "identity", "--optimise", "mse", "--refine", "mse",
        "--iterations", "20,10", "--device", "cpu", "--out", runs["folder"] / "eval-opt",
    )  # fmt: skip
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:5]}
    assert set(rows) == {"identity", "opt-mse", "deepsim", "deepsim+mse"}
    assert float(rows["opt-mse"][5]) > 0  # sd log J: the optimisation moved the image
    assert float(rows["deepsim+mse"][6]) > float(rows["deepsim"][6])  # it costs the time it takes


def test_refine_own_uses_the_metric_and_extractor_the_model_was_trained_with(runs):
    out = runs["folder"] / "eval-own"
    _deepsim(
        "evaluate", *runs["data"], "--frames", "4:6", "--models", runs["model"],
        "--refine", "own", "--refine", f"deepsim:{runs['features']}",
        "--iterations", "10,5", "--device", "cpu", "--out", out,
    )  # fmt: skip
    with (out / "summary.csv").open() as stream:
        rows = {row["model"]: row for row in csv.DictReader(stream)}
    assert rows["deepsim+own"]["metric"] == "deepsim+deepsim"
    # the same metric, extractor and settings as the named row: the same deterministic run
    assert rows["deepsim+own"]["dice"] == rows["deepsim+deepsim"]["dice"]
    assert rows["deepsim+own"]["sdlogj"] == rows["deepsim+deepsim"]["sdlogj"]
