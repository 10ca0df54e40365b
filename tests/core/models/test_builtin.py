"""The built-in models: names everywhere, checksums, cards, guard rails and --init."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from src_training.cli import main
from src_training.data.datasets import load_image_file, load_label_file
from src_training.data.profile import profile_distance
from src_training.engine.demo import sample_dataset
from src_training.engine.metrics import load_extractor, registration_metric
from src_training.engine.registration import load_registration_model, register_pair, run_to_end
from src_training.engine.training import registration_trainer
from src_training.metrics.dice import mean_dice
from src_training.models import ENV, REINSTALL, builtin_file, builtin_models, resolve
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.training.trainer import TrainConfig
from src_training.training.trainers import RegistrationTrainer

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
ISBI = DATA / "isbi2012_em"
T98G = DATA / "t98g_phase"
needs_data = pytest.mark.skipif(not ISBI.is_dir(), reason="../shared/data is absent")
NAMES = ("em-2d", "phase-contrast-2d")  # registration model and extractor
EXTRACTOR = "prostate-mr-us-3d"  # a feature extractor alone (tests/core/models/test_builtin_3d.py)


def test_the_registry_lists_every_model_with_their_scores_and_cards():
    models = builtin_models()
    assert list(models) == [*NAMES, EXTRACTOR]
    for model in models.values():
        assert model.ndim == (3 if model.name == EXTRACTOR else 2) and model.channels == 1
        assert model.registers == (model.name != EXTRACTOR)
        assert model.heldout_dice is not None
        assert model.heldout["pairs"] >= (2 if model.name == EXTRACTOR else 3)
        assert 0 < model.size_bytes < 5e6  # a few MB at most: 16-bit weights
        assert (model.folder / model.card).is_file()
        assert model.name in model.description() and "built-in" in model.description()


@pytest.mark.parametrize("name", NAMES)
def test_a_name_loads_both_networks_in_float32(name):
    model = load_registration_model(name)
    assert isinstance(model.network, RegistrationNet)
    assert model.metadata["builtin"] == name and model.metadata["features"] == name
    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    extractor = load_extractor(name, "deepsim", ndim=2, channels=1)
    assert isinstance(extractor, FeatureExtractor) and extractor.kind == "segmentation"
    assert resolve(name) == builtin_file(name)
    assert resolve(f"./{name}") == Path(f"./{name}")  # a path is a file, not a name


def _damaged_copy(tmp_path, monkeypatch, part="registration"):
    source = builtin_models()["em-2d"].folder
    copy = tmp_path / "models"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    target = (
        copy
        / json.loads((copy / "registry.json").read_text())["models"]["em-2d"]["files"][part]["file"]
    )
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setenv(ENV, str(copy))
    return target


def test_a_damaged_builtin_file_is_refused_naming_it_and_the_fix(tmp_path, monkeypatch):
    target = _damaged_copy(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="SHA-256") as err:
        load_registration_model("em-2d")
    assert str(target) in str(err.value) and REINSTALL in str(err.value)
    load_extractor("em-2d", "deepsim", 2, 1)  # the intact extractor still loads


def test_the_cli_refuses_a_damaged_builtin_with_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    target = _damaged_copy(tmp_path, monkeypatch, part="features")
    assert main(["info", "em-2d"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and REINSTALL in err


def test_deepsim_models_lists_name_modality_ndim_size_and_dice(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "modality", "ndim", "parts", "size", "held-out", "Dice"]
    for name, line in zip([*NAMES, EXTRACTOR], lines[1:4], strict=True):
        model = builtin_models()[name]
        assert line.startswith(name) and model.modality in line and f"{model.ndim}D" in line
        assert f"{model.heldout_dice:.3f}" in line and " MB" in line
        assert ("model+extractor" if model.registers else " extractor ") in line
    used = f"{EXTRACTOR} is a feature extractor alone: `{builtin_models()[EXTRACTOR].use}`"
    assert used in lines


def test_deepsim_info_shows_the_card(capsys):
    assert main(["info", "em-2d"]) == 0
    card = capsys.readouterr().out
    for words in ("isbi2012_em", "Licence", "Arganda-Carreras", "25:30", "elastix"):
        assert words in card
    assert "scripts/train-builtin.py" in card


@needs_data
def test_register_em_2d_on_two_isbi_sections_beats_identity(tmp_path, capsys):
    images, labels = ISBI / "images", ISBI / "labels"
    args = ["register", "--model", "em-2d", str(images / "25.png"), str(images / "26.png")]
    args += ["--labels", str(labels / "26.png"), "--fixed-labels", str(labels / "25.png")]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    found = re.search(r"Dice .*: ([0-9.]+) before -> ([0-9.]+) after", captured.out)
    before, after = float(found[1]), float(found[2])
    assert after > before + 0.05
    assert "warning" not in captured.err  # EM sections are like em-2d's training data


@needs_data
def test_data_unlike_the_training_data_gets_one_warning_line(tmp_path, capsys):
    frames = [str(T98G / "images" / f"t{t:02d}.tif") for t in (21, 22)]
    args = ["register", "--model", "em-2d", *frames, "--device", "cpu", "--out", str(tmp_path)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deepsim: warning: ")
    assert "em-2d" in err and "--init em-2d" in err


@needs_data
def test_each_builtin_profile_accepts_its_own_data_and_flags_the_other():
    em = load_registration_model("em-2d").metadata["intensity_profile"]
    phase = load_registration_model("phase-contrast-2d").metadata["intensity_profile"]
    section, _ = load_image_file(ISBI / "images" / "27.png", normalise=False)
    frame, _ = load_image_file(T98G / "images" / "t22.tif", normalise=False)
    assert profile_distance(em, section) < 0.05 < 0.2 < profile_distance(em, frame)
    assert profile_distance(phase, frame) < 0.05 < 0.2 < profile_distance(phase, section)


@needs_data
def test_the_engine_result_carries_the_warning_and_the_dice():
    model = load_registration_model("em-2d")
    fixed, _ = load_image_file(ISBI / "images" / "28.png", normalise=False)
    moving, _ = load_image_file(ISBI / "images" / "29.png", normalise=False)
    fixed_labels = load_label_file(ISBI / "labels" / "28.png")
    labels = [load_label_file(ISBI / "labels" / "29.png")]
    result = run_to_end(
        register_pair(model, fixed, moving, moving_labels=labels, fixed_labels=fixed_labels)
    )
    assert result.warnings == []
    assert mean_dice(result.warped_labels[0], fixed_labels) == result.dice[0][1] > result.dice[0][0]
    assert result.folding_percent < 1.0


def _first_loss(trainer):
    return next(iter(trainer.run())).loss


def test_init_starts_from_the_builtin_weights(single_thread):
    data = sample_dataset().subset(range(4))
    config = TrainConfig(steps=2, batch_size=2, crop=48, lr=1e-3, seed=3)
    metric = registration_metric("deepsim", ndim=2, channels=1, features="em-2d")
    tuned = registration_trainer(data, None, metric, config, init="em-2d")
    assert tuned.metadata["init"] == "em-2d" and tuned.metadata["features"] == "em-2d"
    builtin = load_registration_model("em-2d").network
    weights = zip(tuned.network.state_dict().values(), builtin.state_dict().values(), strict=True)
    for a, b in weights:
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    reference = RegistrationTrainer(builtin, config, data, metric=metric, lam=tuned.lam)
    expected = _first_loss(reference)
    assert _first_loss(tuned) == pytest.approx(expected, rel=1e-5)
    channels = tuple(builtin_models()["em-2d"].network)
    fresh = registration_trainer(data, None, metric, config, channels=channels)
    assert _first_loss(fresh) != pytest.approx(expected, rel=1e-3)


def test_deepsim_train_init_runs_and_records_its_start(tmp_path, capsys, single_thread):
    stack = sample_dataset().subset(range(4))
    path = tmp_path / "cells.npz"
    np.savez(path, images=stack.images[:, 0], labels=stack.labels)
    out = tmp_path / "tuned.pt"
    args = ["train", str(path), "--metric", "deepsim", "--features", "em-2d", "--init", "em-2d"]
    args += ["--steps", "2", "--crop", "32", "--batch-size", "2", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    assert load_registration_model(out).metadata["init"] == "em-2d"
    out = tmp_path / "features.pt"
    args = ["train-features", str(path), "--init", "phase-contrast-2d", "--steps", "2"]
    args += ["--crop", "32", "--device", "cpu", "--out", str(out)]
    assert main(args) == 2  # the sample has 3 classes, the built-in extractor segments 2
    assert "number of classes is 2 but this training needs 3" in capsys.readouterr().err
    assert main([*args, "--labels", "foreground"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--channels", "8,16"], "leave --channels out"),
        (["--diffeomorphic"], "diffeomorphic setting is False"),
    ],
)
def test_init_refuses_another_architecture_in_one_line(tmp_path, capsys, extra, message):
    stack = sample_dataset().subset(range(3))
    path = tmp_path / "cells.npz"
    np.savez(path, images=stack.images[:, 0])
    args = ["train", str(path), "--metric", "ncc", "--init", "em-2d", "--steps", "1", *extra]
    assert main([*args, "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "em-2d" in err


def test_init_refuses_data_of_another_dimensionality(tmp_path, capsys):
    volume = np.random.default_rng(0).random((3, 16, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "v.npz", images=volume)
    args = ["train", str(tmp_path / "v.npz"), "--metric", "ncc", "--init", "em-2d", "--ndim", "3"]
    assert main([*args, "--steps", "1", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "dimensionality is 2 but this training needs 3" in err


def test_an_unknown_name_is_neither_a_file_nor_a_builtin(capsys):
    with pytest.raises(FileNotFoundError, match="em-3d is neither a model file nor a built-in"):
        load_registration_model("em-3d")
    assert main(["register", "--model", "em-3d", "a.png", "b.png"]) == 2
    assert f"built-in: em-2d, phase-contrast-2d, {EXTRACTOR}" in capsys.readouterr().err


def test_the_registry_module_imports_no_torch():
    code = "import sys, src_training.models as m; m.builtin_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
