"""The deepsim sub-commands end to end on small real data from ../shared/data."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from src_training.cli import main
from src_training.engine.demo import sample_dataset
from src_training.networks.modelio import load_model
from src_training.networks.models import RegistrationNet
from src_training.spatial.fieldio import load_field

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
ISBI = DATA / "isbi2012_em"
C2C12 = DATA / "small_timelapses" / "c2c12_phase_data_small.npz"
BIN = Path(sys.executable).parent
TINY = ["--channels", "4,8,16", "--crop", "48", "--device", "cpu", "--batch-size", "2"]

needs_data = pytest.mark.skipif(
    not ISBI.is_dir(), reason="../shared/data is not beside the checkout"
)


def _sample_npz(path):
    data = sample_dataset()
    np.savez(path, images=data.images[:, 0], labels=data.labels)
    return path


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A feature extractor and a DeepSim model trained for a few steps on ISBI EM."""
    if not ISBI.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    out = tmp_path_factory.mktemp("models")
    f, r = out / "f.pt", out / "r.pt"
    assert (
        main(
            ["train-features", str(ISBI), "--frames", "0:4", "--steps", "3", *TINY, "--out", str(f)]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                str(ISBI),
                "--metric",
                "deepsim",
                "--features",
                str(f),
                "--frames",
                "0:4",
                "--val-frames",
                "20:22",
                "--val-every",
                "2",
                "--steps",
                "3",
                *TINY,
                "--out",
                str(r),
            ]
        )
        == 0
    )
    return f, r


@needs_data
@pytest.mark.slow
def test_train_writes_model_checkpoint_and_curves(trained):
    f, r = trained
    meta = load_model(r).metadata
    assert meta["metric"] == "deepsim" and meta["lam"] == 1.0  # the metric's default
    assert meta["class_values"] == [0, 255] and "frames 0:4" in meta["train_data"]
    assert meta["features"] == str(f.resolve())
    assert load_model(r.with_name("r.last.pt")).training_state["step"] == 3
    rows = _rows(r.with_suffix(".csv"))
    assert [row["step"] for row in rows if row["loss"]] == ["1", "2", "3"]
    assert [row["step"] for row in rows if row["val_dice"]] == ["2", "3"]
    assert load_model(f).network.kind == "segmentation"


@needs_data
@pytest.mark.slow
def test_evaluate_writes_the_tables_with_the_identity_row(trained, tmp_path, capsys):
    _, r = trained
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(ISBI),
                "--frames",
                "25:28",
                "--models",
                "em-2d",
                "--models",  # repeated: adds to the first (it used to replace it)
                str(r),
                "--baseline",
                "identity",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    summary = _rows(out / "summary.csv")
    assert [row["model"] for row in summary] == ["identity", "em-2d", "r"]
    for column in (
        "model",
        "metric",
        "dice",
        "dice_sd",
        "folding_percent",
        "sdlogj",
        "seconds_per_pair",
        "dice_0",
        "dice_255",
    ):
        assert column in summary[0]
    pairs = _rows(out / "pairs.csv")
    assert len(pairs) == 6 and {p["moving_name"] for p in pairs} == {"26", "27"}
    identity = [p for p in pairs if p["model"] == "identity"]
    # the identity Dice is the plain overlap of consecutive label images
    from src_training.data.datasets import load_dataset
    from src_training.metrics.dice import mean_dice

    labels = load_dataset(ISBI, frames=slice(25, 27)).labels
    assert float(identity[0]["dice"]) == pytest.approx(mean_dice(labels[1], labels[0]))
    assert "2 pairs" in capsys.readouterr().out


@needs_data
@pytest.mark.slow
def test_register_a_pair_writes_every_output_and_reports_dice(trained, tmp_path, capsys):
    _, r = trained
    out = tmp_path / "reg"
    args = [
        "register",
        "--model",
        str(r),
        str(ISBI / "images/25.png"),
        str(ISBI / "images/26.png"),
        "--labels",
        str(ISBI / "labels/26.png"),
        "--fixed-labels",
        str(ISBI / "labels/25.png"),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "displacement.npz",
        "displacement.tif",
        "jacobian.tif",
        "warped.tif",
        "warped_26.tif",
    ]
    assert load_field(out / "displacement.npz").displacement.shape == (2, 512, 512)
    warped_labels = tifffile.imread(out / "warped_26.tif")
    assert set(np.unique(warped_labels)) <= {0, 255}
    warped = tifffile.imread(out / "warped.tif")
    assert warped.shape == (512, 512) and warped.max() > 100  # original intensities, not [0,1]
    assert "before ->" in capsys.readouterr().out
    assert main(args) == 2  # never overwrites silently
    assert "already holds" in capsys.readouterr().err


@needs_data
@pytest.mark.slow
def test_register_a_series_to_its_predecessors(trained, tmp_path):
    _, r = trained
    assert (
        main(
            [
                "register",
                "--model",
                str(r),
                "--series",
                str(C2C12),
                "--reference",
                "previous",
                "--out",
                str(tmp_path / "s"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    disp = load_field(tmp_path / "s" / "displacements.npz", allow_stack=True).displacement
    assert disp.shape == (10, 2, 234, 234)
    assert not disp[0].any()  # frame 0 is the reference
    assert tifffile.imread(tmp_path / "s" / "warped.tif").shape == (10, 234, 234)
    assert (
        main(
            [
                "register",
                "--model",
                str(r),
                "--series",
                str(C2C12),
                "--reference",
                "12",
                "--out",
                str(tmp_path / "t"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )


@pytest.mark.slow
@needs_data
def test_user_errors_exit_2_with_one_sentence(trained, tmp_path, capsys):
    f, r = trained
    train_deepsim = ["train", str(ISBI), "--metric", "deepsim", "--features", str(f)]
    cases = [
        (
            ["train", str(ISBI), "--metric", "deepsim", "--out", str(tmp_path / "a.pt")],
            "needs a trained feature extractor",
        ),
        (["train", str(ISBI), "--metric", "mse", "--out", str(r)], "already exists"),
        (
            ["train", str(ISBI), "--metric", "mse", "--resume", "--out", str(tmp_path / "b.pt")],
            "cannot resume",
        ),
        (
            [
                "train",
                str(ISBI),
                "--metric",
                "deepsim-ae",
                "--features",
                str(f),
                "--out",
                str(tmp_path / "c.pt"),
            ],
            "needs a autoencoder feature extractor",
        ),
        (
            ["train", str(ISBI), "--metric", "nope", "--out", str(tmp_path / "d.pt")],
            "unknown metric 'nope'",
        ),
        (
            [
                "register",
                "--model",
                str(f),
                str(ISBI / "images/00.png"),
                str(ISBI / "images/01.png"),
            ],
            "holds a features model",
        ),
        (
            [
                "evaluate",
                str(ISBI),
                "--frames",
                "40:50",
                "--baseline",
                "identity",
                "--out",
                str(tmp_path / "e"),
            ],
            "select nothing",
        ),
        (["info", str(ISBI / "images/00.png")], "not a napari-deepsim model file"),
        (
            [*train_deepsim, "--feature-levels", "1,9", "--out", str(tmp_path / "f.pt")],
            "has 3 encoder stages; choose levels from 1 to 3",
        ),
        (
            [*train_deepsim, "--feature-levels", "one", "--out", str(tmp_path / "g.pt")],
            "--feature-levels must be stage numbers like 1,2",
        ),
        (
            [*train_deepsim[:3], "mse", "--feature-levels", "1", "--out", str(tmp_path / "h.pt")],
            "--feature-levels applies to deepsim and deepsim-ae, not mse",
        ),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert "Traceback" not in err


@needs_data
def test_feature_levels_are_recorded_with_the_model(trained, tmp_path):
    f, _ = trained
    out = tmp_path / "levels.pt"
    args = ["train", str(ISBI), "--metric", "deepsim", "--features", str(f), "--frames", "0:4"]
    assert main([*args, "--feature-levels", "3,1", "--steps", "1", *TINY, "--out", str(out)]) == 0
    assert load_model(out).metadata["feature_levels"] == [1, 3]


@needs_data
def test_a_3d_model_refuses_2d_images(tmp_path, capsys):
    from src_training.networks.modelio import save_model
    from src_training.networks.models import RegistrationNet

    model = save_model(tmp_path / "m3.pt", RegistrationNet(3, channels=(4,)), {})
    assert (
        main(
            [
                "register",
                "--model",
                str(model),
                str(ISBI / "images/00.png"),
                str(ISBI / "images/01.png"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "registers 3D images but the fixed image" in capsys.readouterr().err


def test_info_shows_the_metadata(tmp_path, capsys):
    from src_training.networks.modelio import save_model
    from src_training.networks.models import RegistrationNet

    path = save_model(tmp_path / "m.pt", RegistrationNet(2, channels=(4,)), {"metric": "mind"})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "registration model, 2D" in out and "metric: mind" in out


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_saves_a_resumable_checkpoint(tmp_path):
    data = _sample_npz(tmp_path / "cells.npz")
    out = tmp_path / "r.pt"
    proc = subprocess.Popen(
        [
            BIN / "deepsim",
            "train",
            str(data),
            "--metric",
            "mse",
            "--steps",
            "100000",
            "--channels",
            "4,8",
            "--crop",
            "32",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as from a terminal, even when these tests run as a background job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    log = out.with_suffix(".csv")
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 4):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    step = load_model(out.with_name("r.last.pt")).training_state["step"]
    assert step >= 3
    assert f"stopped at step {step}" in stdout
    assert int(_rows(log)[-1]["step"]) == step


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_with_the_same_global_batch(tmp_path):
    data = _sample_npz(tmp_path / "cells.npz")
    common = [
        "train",
        str(data),
        "--metric",
        "mse",
        "--steps",
        "3",
        "--channels",
        "4,8",
        "--crop",
        "32",
        "--device",
        "cpu",
        "--seed",
        "1",
        "--lr",
        "1e-4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [BIN / "deepsim", *common, "--batch-size", "4", "--out", str(tmp_path / "one.pt")],
        check=True,
        env=env,
        capture_output=True,
    )
    ddp = subprocess.run(
        [
            BIN / "torchrun",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "src_training.cli",
            *common,
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "two.pt"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = load_model(tmp_path / "one.pt")
    two = load_model(tmp_path / "two.pt")
    assert two.metadata["world_size"] == 2 and one.metadata["world_size"] == 1
    a = np.concatenate([p.detach().numpy().ravel() for p in one.network.parameters()])
    b = np.concatenate([p.detach().numpy().ravel() for p in two.network.parameters()])
    # The ranks average their gradients where one process takes the batch mean: equal up
    # to float rounding. Adam divides by |g|, so a parameter whose gradient is ~0 can step
    # by up to lr in either direction: no parameter differs by more than 2 * lr * steps,
    # and nearly all agree to 1e-6.
    diff = np.abs(a - b)
    assert diff.max() <= 2 * 1e-4 * 3
    assert np.mean(diff < 1e-6) > 0.99
    torch.manual_seed(1)
    start = np.concatenate(
        [p.detach().numpy().ravel() for p in RegistrationNet(2, 1, (4, 8)).parameters()]
    )
    assert np.abs(a - start).max() > 1e-4  # the three steps did move the weights


PROSTATE = DATA / "prostate_mr_us_3d"
BRAIN = DATA / "brain_mri_3d"
MNI = DATA / "mni152_2009" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@needs_data
@pytest.mark.slow
def test_3d_paired_mr_us_train_and_evaluate(tmp_path):
    out = tmp_path / "p.pt"
    assert (
        main(
            [
                "train",
                str(PROSTATE / "train"),
                "--frames",
                "0:4",
                "--metric",
                "ncc-sup",
                "--steps",
                "2",
                "--channels",
                "4,8",
                "--crop",
                "24",
                "--batch-size",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert load_model(out).ndim == 3
    assert (
        main(
            [
                "evaluate",
                str(PROSTATE / "test"),
                "--models",
                str(out),
                "--baseline",
                "identity",
                "--out",
                str(tmp_path / "e"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = _rows(tmp_path / "e" / "pairs.csv")
    assert {r["moving_name"] for r in rows} == {"case000025/moving", "case000026/moving"}
    assert {r["model"] for r in rows} == {"identity", "p"}
    # register one MR/US case: the MR lives on another grid and is resampled to the US grid
    case = PROSTATE / "test"
    args = [
        "register",
        "--model",
        str(out),
        str(case / "fixed_images/case000025.nii.gz"),
        str(case / "moving_images/case000025.nii.gz"),
        "--labels",
        str(case / "moving_labels/case000025.nii.gz"),
        "--out",
        str(tmp_path / "r"),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    import nibabel as nib

    fixed_shape = nib.load(case / "fixed_images/case000025.nii.gz").shape
    assert nib.load(tmp_path / "r" / "warped.nii.gz").shape == fixed_shape
    assert nib.load(tmp_path / "r" / "displacement.nii.gz").shape == (*fixed_shape, 3)
    saved = load_field(tmp_path / "r" / "displacement.npz")
    assert saved.displacement.shape == (3, *fixed_shape) and saved.axes == "xyz"
    warped_labels = np.asarray(nib.load(tmp_path / "r" / "warped_case000025.nii.gz").dataobj)
    assert warped_labels.shape == fixed_shape and warped_labels.max() >= 1


@needs_data
@pytest.mark.slow
def test_3d_brain_to_atlas_smoke(tmp_path, capsys):
    out = tmp_path / "b.pt"
    assert (
        main(
            [
                "train",
                str(BRAIN),
                "--atlas",
                str(MNI),
                "--labels",
                "none",
                "--metric",
                "mse",
                "--steps",
                "1",
                "--channels",
                "4,8",
                "--crop",
                "32",
                "--batch-size",
                "1",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    meta = load_model(out).metadata
    assert "every image to the atlas" in meta["train_data"]
    assert (
        main(
            [
                "train",
                str(BRAIN),
                "--atlas",
                str(MNI),
                "--metric",
                "mse",
                "--out",
                str(tmp_path / "c.pt"),
            ]
        )
        == 2
    )
    assert "pass --atlas-labels" in capsys.readouterr().err


def test_a_three_frame_result_stack_round_trips_as_frames(tmp_path):
    """tifffile would store (3, H, W) as RGB planes unless told they are frames."""
    from src_training.data.datasets import load_dataset
    from src_training.data.writing import write_image

    stack = np.random.default_rng(0).random((3, 12, 10)).astype(np.float32)
    write_image(tmp_path / "s.tif", stack, ndim=2)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert len(tif.pages) == 3
    assert load_dataset(tmp_path / "s.tif", labels="none").images.shape == (3, 1, 12, 10)
