"""A corpus of malformed inputs: each gets one line naming the problem and the fix.

Every error case runs through the CLI: exit code 2, exactly one line
``deepsim: error: ...`` on stderr, no traceback, and every file in the case's folder
(inputs, existing outputs) byte for byte unchanged, with nothing new written. Where a
public function is the natural entry point, the Python API raises the same message.
A few inputs are handled instead (colour images, pairs of different shapes, tiny or
constant images): those exit 0 and leave the inputs unchanged.

docs/errors.md documents every case in one table; the tests read that table, so a case
missing from it, a stale row or a message that changed fails here.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch._inductor.exc import InvalidCxxCompiler

from src_training.cli import main
from src_training.data.datasets import load_dataset, load_image_file, parse_frames
from src_training.data.lazy import open_stack
from src_training.data.normalise import check_not_constant, check_spatial_size
from src_training.data.points import read_points_csv
from src_training.engine.optimisation import optimisation_config
from src_training.evaluation.ants import AntsSyN
from src_training.evaluation.baselines import ElastixBSpline
from src_training.evaluation.curves import read_validation_curve
from src_training.evaluation.figures import parse_zoom
from src_training.metrics import build_metric, get_metric
from src_training.networks import modelio
from src_training.networks.modelio import load_model, require_kind, save_model
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.registration.inference import (
    check_model_fits,
    check_registration_memory,
    register_series,
)
from src_training.runtime import memory
from src_training.runtime.devices import resolve_device
from src_training.runtime.memory import check_training_memory
from src_training.runtime.precision import resolve_precision
from src_training.spatial.fieldio import FieldFile, load_field, save_field
from src_training.training.trainer import TrainConfig
from src_training.training.trainers import RegistrationTrainer

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
SMALL = (4, 8)
TINY = ["--channels", "4,8", "--crop", "16", "--batch-size", "2", "--device", "cpu"]
pytestmark = pytest.mark.usefixtures("single_thread")
ERROR_PREFIX = "deepsim: error: "
# a message names the fix with one of these words (e.g. "; use a 3D model")
FIX = re.compile(
    r"\b(use|pass|choose|check|replace|train|upgrade|create|select|copy|make|relabel|"
    r"crop|convert|register|free|expected|must|needs?|see|give|lower|fix|run|save|install)\b"
)


class Workspace:
    """Writes the inputs of one case into its own folder."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.rng = np.random.default_rng(0)

    def path(self, name: str) -> str:
        return str(self.root / name)

    def array(self, name: str, array: np.ndarray) -> str:
        path = self.root / name
        if name.endswith(".npy"):
            np.save(path, array)
        elif name.endswith(".png"):
            Image.fromarray(array).save(path)
        else:
            tifffile.imwrite(path, array, photometric="minisblack")
        return str(path)

    def image(self, name: str = "fixed.tif", shape: tuple[int, ...] = (32, 32)) -> str:
        return self.array(name, self.rng.random(shape).astype(np.float32))

    def stack(self, name: str = "stack.npz", labels: np.ndarray | None = None, frames: int = 4):
        images = self.rng.random((frames, 32, 32)).astype(np.float32)
        if labels is None:
            labels = (images > 0.5).astype(np.uint8)
        np.savez(self.root / name, images=images, labels=labels)
        return str(self.root / name)

    def unlabelled_stack(self, name: str = "stack.npy", frames: int = 4) -> str:
        return self.array(name, self.rng.random((frames, 32, 32)).astype(np.float32))

    def model(self, name: str = "r.pt", ndim: int = 2, in_channels: int = 1) -> str:
        torch.manual_seed(0)
        return str(save_model(self.root / name, RegistrationNet(ndim, in_channels, SMALL), {}))

    def features(
        self, name: str = "f.pt", ndim: int = 2, in_channels: int = 1, classes: int = 2
    ) -> str:
        torch.manual_seed(0)
        network = FeatureExtractor(ndim, in_channels, classes, SMALL)
        return str(save_model(self.root / name, network, {}))

    def train(self, *options: str, data: str | None = None, out: str = "out.pt") -> list[str]:
        return ["train", data or self.stack(), *options, *TINY, "--out", self.path(out)]

    def register(self, fixed: str, moving: str, *options: str, model: str | None = None):
        model = model or self.model()
        return ["register", "--model", model, fixed, moving, *options, "--out", self.path("out")]

    def series(self, stack: str, *options: str) -> list[str]:
        return ["register", "--model", self.model(), "--series", stack, *options]


@dataclass
class Case:
    """What to run: CLI arguments and, where there is one, the equivalent API call."""

    argv: list[str]
    api: Callable[[], object] | None = None


CASES: dict[str, Callable[[Workspace], Case]] = {}


def case(name: str) -> Callable[[Callable[[Workspace], Case]], Callable[[Workspace], Case]]:
    def register(build: Callable[[Workspace], Case]) -> Callable[[Workspace], Case]:
        CASES[name] = build
        return build

    return register


# --- files ------------------------------------------------------------------------------


@case("missing-image")
def _(w: Workspace) -> Case:
    missing = w.path("missing.tif")
    return Case(w.register(w.image(), missing), lambda: load_image_file(missing))


@case("missing-dataset")
def _(w: Workspace) -> Case:
    missing = w.path("no_such_folder")
    return Case(w.train("--metric", "mse", data=missing), lambda: load_dataset(missing))


@case("unreadable-image")
def _(w: Workspace) -> Case:
    locked = w.image("locked.tif")
    os.chmod(locked, 0)
    if _readable(Path(locked)) is not None:
        pytest.skip("this user reads files whatever their permissions (root)")
    return Case(w.register(w.image(), locked), lambda: load_image_file(locked))


def _readable(path: Path) -> bytes | None:
    """The bytes of a file, or None where permissions forbid reading it."""
    try:
        return path.read_bytes()
    except PermissionError:
        return None


@case("truncated-tiff")
def _(w: Workspace) -> Case:
    whole = Path(w.image("whole.tif", (64, 64))).read_bytes()
    cut = w.root / "cut.tif"
    cut.write_bytes(whole[: len(whole) // 2])
    return Case(w.register(w.image(), str(cut)), lambda: load_image_file(cut))


@case("text-posing-as-tiff")
def _(w: Workspace) -> Case:
    text = w.root / "notes.tif"
    text.write_text("these are my notes, not an image\n")
    return Case(w.register(w.image(), str(text)), lambda: load_image_file(text))


@case("pickle-posing-as-npy")
def _(w: Workspace) -> Case:
    path = w.root / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return Case(w.register(w.image(), str(path)), lambda: load_image_file(path))


@case("unsupported-file-type")
def _(w: Workspace) -> Case:
    path = w.root / "image.bmp"
    path.write_bytes(b"BM not supported")
    return Case(w.register(w.image(), str(path)), lambda: load_image_file(path))


@case("npz-without-image-array")
def _(w: Workspace) -> Case:
    path = w.root / "arrays.npz"
    np.savez(path, something=np.zeros((3, 8, 8)))
    return Case(w.train("--metric", "mse", data=str(path)), lambda: load_dataset(path))


# --- shapes and values ------------------------------------------------------------------


@case("one-dimensional-array")
def _(w: Workspace) -> Case:
    path = w.array("line.npy", np.arange(10.0))
    return Case(w.register(w.image(), path), lambda: load_image_file(path))


@case("four-dimensional-image")
def _(w: Workspace) -> Case:
    path = w.array("four.npy", np.ones((2, 3, 8, 8)))
    return Case(w.register(w.image(), path), lambda: load_image_file(path))


@case("five-dimensional-stack")
def _(w: Workspace) -> Case:
    path = w.array("five.npy", np.ones((2, 2, 3, 8, 8)))
    return Case(w.train("--metric", "mse", data=path), lambda: load_dataset(path))


@case("colour-axis-last-in-npy")
def _(w: Workspace) -> Case:
    rgb = w.array("rgb.npy", w.rng.random((32, 32, 3)))
    model = w.model()
    image = load_image_file(rgb)[0]
    return Case(
        w.register(rgb, w.array("rgb2.npy", w.rng.random((32, 32, 3))), model=model),
        lambda: check_model_fits(load_model(model), image, f"the fixed image {rgb}"),
    )


@case("fixed-2d-moving-3d")
def _(w: Workspace) -> Case:
    return Case(w.register(w.image(), w.image("volume.tif", (8, 16, 16))))


@case("moving-labels-of-another-shape")
def _(w: Workspace) -> Case:
    labels = w.array("labels.tif", np.zeros((20, 20), np.uint8))
    return Case(w.register(w.image(), w.image("moving.tif"), "--labels", labels))


@case("fixed-labels-of-another-shape")
def _(w: Workspace) -> Case:
    labels = w.array("labels.tif", np.zeros((20, 20), np.uint8))
    return Case(w.register(w.image(), w.image("moving.tif"), "--fixed-labels", labels))


@case("label-stack-of-another-length")
def _(w: Workspace) -> Case:
    data = w.unlabelled_stack()
    labels = w.array("labels.npy", np.zeros((3, 32, 32), np.uint8))
    return Case(
        w.train("--metric", "mse", "--label-file", labels, data=data),
        lambda: load_dataset(data, label_file=labels),
    )


@case("non-integer-labels")
def _(w: Workspace) -> Case:
    labels = w.image("labels.tif")
    return Case(w.register(w.image(), w.image("moving.tif"), "--labels", labels))


@case("nan-pixels")
def _(w: Workspace) -> Case:
    image = w.rng.random((32, 32)).astype(np.float32)
    image[3, 4] = np.nan
    path = w.array("nan.tif", image)
    return Case(w.register(w.image(), path), lambda: load_image_file(path))


@case("inf-pixels-in-stack")
def _(w: Workspace) -> Case:
    images = w.rng.random((4, 32, 32)).astype(np.float32)
    images[2, 5, 5] = np.inf
    path = w.array("inf.npy", images)
    return Case(w.train("--metric", "mse", data=path), lambda: load_dataset(path))


@case("single-pixel-image")
def _(w: Workspace) -> Case:
    pixel = w.array("pixel.tif", np.ones((1, 1), np.float32))
    what = f"the fixed image {pixel}"
    return Case(w.register(pixel, pixel), lambda: check_spatial_size((1, 1), what))


@case("constant-moving-image")
def _(w: Workspace) -> Case:
    flat = w.array("flat.tif", np.full((32, 32), 7.0, np.float32))
    image = np.full((1, 32, 32), 7.0, np.float32)
    return Case(
        w.register(w.image(), flat), lambda: check_not_constant(image, f"the moving image {flat}")
    )


@case("constant-fixed-image-optimised")
def _(w: Workspace) -> Case:
    zeros = w.array("zeros.tif", np.zeros((32, 32), np.float32))
    argv = ["register", "--optimise", zeros, w.image(), "--out", w.path("out")]
    image = np.zeros((1, 32, 32), np.float32)
    return Case(argv, lambda: check_not_constant(image, f"the fixed image {zeros}"))


@case("single-pixel-stack")
def _(w: Workspace) -> Case:
    path = w.array("pixels.npy", np.ones((4, 1, 1), np.float32))
    return Case(w.train("--metric", "ncc", data=path), lambda: load_dataset(path))


@case("too-large-for-memory")
def _(w: Workspace) -> Case:
    w.monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 2**16)
    image = w.image("large.tif", (64, 64))
    network = RegistrationNet(2, 1, SMALL)
    return Case(
        w.register(image, image),
        lambda: check_registration_memory(network, (64, 64), 1, "cpu"),
    )


@case("training-too-large-for-memory")
def _(w: Workspace) -> Case:
    w.monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 2**16)
    network = RegistrationNet(2, 1, SMALL)
    return Case(
        w.train("--metric", "mse"),
        lambda: check_training_memory(network, (32, 32), 16, 2, "cpu"),
    )


@case("out-of-memory-while-running")
def _(w: Workspace) -> Case:
    def exhausted(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    w.monkeypatch.setattr("src_training.engine.registration.predict", exhausted)
    (w.root / "out").mkdir()
    return Case(w.register(w.image(), w.image("moving.tif")))


@case("empty-label-maps-for-features")
def _(w: Workspace) -> Case:
    data = w.stack(labels=np.zeros((4, 32, 32), np.uint8))
    return Case(["train-features", data, *TINY, "--out", w.path("f.pt")])


@case("self-supervised-on-constant-images")
def _(w: Workspace) -> Case:
    data = w.array("stack.npy", np.full((4, 32, 32), 7, np.float32))
    return Case(["train-features", data, "--self-supervised", *TINY, "--out", w.path("f.pt")])


@case("self-supervised-without-noise")
def _(w: Workspace) -> Case:
    data = w.unlabelled_stack()
    args = ["train-features", data, "--self-supervised", "--noise", "0", *TINY]
    return Case([*args, "--out", w.path("f.pt")])


@case("self-supervised-segmentation")
def _(w: Workspace) -> Case:
    args = ["train-features", w.stack(), "--self-supervised", "--kind", "segmentation", *TINY]
    return Case([*args, "--out", w.path("f.pt")])


@case("empty-label-maps-for-ncc-sup")
def _(w: Workspace) -> Case:
    data = w.stack(labels=np.zeros((4, 32, 32), np.uint8))

    def api() -> object:
        return RegistrationTrainer(
            RegistrationNet(2, 1, SMALL),
            TrainConfig(steps=1),
            load_dataset(data),
            metric=build_metric("ncc-sup"),
            lam=0.5,
        )

    return Case(w.train("--metric", "ncc-sup", data=data), api)


@case("atlas-label-values-never-seen")
def _(w: Workspace) -> Case:
    atlas = w.image("atlas.tif")
    labels = w.array("atlas_labels.tif", np.full((32, 32), 7, np.uint8))
    return Case(w.train("--metric", "mse", "--atlas", atlas, "--atlas-labels", labels))


# --- models for the wrong data ----------------------------------------------------------


@case("3d-model-on-2d-images")
def _(w: Workspace) -> Case:
    fixed = w.image()
    model = w.model("r3.pt", ndim=3)
    image = load_image_file(fixed)[0]
    return Case(
        w.register(fixed, w.image("moving.tif"), model=model),
        lambda: check_model_fits(load_model(model), image, f"the fixed image {fixed}"),
    )


@case("2d-model-on-3d-volumes")
def _(w: Workspace) -> Case:
    fixed = w.image("fixed.tif", (8, 16, 16))
    return Case(w.register(fixed, w.image("moving.tif", (8, 16, 16))))


@case("features-of-another-dimensionality")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "deepsim", "--features", w.features(ndim=3)))


@case("features-of-another-channel-count")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "deepsim", "--features", w.features(in_channels=3)))


# --- options ------------------------------------------------------------------------------


@case("unknown-metric")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "ssim"), lambda: get_metric("ssim"))


@case("negative-lambda")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--lam", "-0.5"))


@case("nan-lambda")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--lam", "nan"))


@case("unknown-precision")
def _(w: Workspace) -> Case:
    return Case(
        w.train("--metric", "mse", "--precision", "fp8"), lambda: TrainConfig(precision="fp8")
    )


@case("unknown-precision-in-register")
def _(w: Workspace) -> Case:
    args = w.register(w.image(), w.image("moving.tif"), "--precision", "half")
    return Case(args, lambda: resolve_precision("half", "cpu"))


@case("bf16-on-a-gpu-without-it")
def _(w: Workspace) -> Case:
    w.monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    w.monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_: False)
    w.monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Tesla T4")
    options = ("--precision", "bf16", "--device", "cuda")
    return Case(w.register(w.image(), w.image("moving.tif"), *options))


@case("compile-failure")
def _(w: Workspace) -> Case:
    class Broken(torch.nn.Module):
        """What torch.compile gives without a working C++ compiler: a failure at the first call."""

        def __init__(self, network: torch.nn.Module) -> None:
            super().__init__()
            self.network = network

        def forward(self, *_args: torch.Tensor) -> torch.Tensor:
            raise InvalidCxxCompiler()

    w.monkeypatch.setattr("src_training.training.trainer.compile_network", Broken)
    return Case(w.train("--metric", "mse", "--compile"))


@case("zero-steps")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--steps", "0"), lambda: TrainConfig(steps=0))


@case("negative-steps-in-demo")
def _(w: Workspace) -> Case:
    return Case(["demo", "--steps", "-5"], lambda: TrainConfig(steps=-5))


@case("non-numeric-steps")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--steps", "many"))


@case("zero-batch-size")
def _(w: Workspace) -> Case:
    return Case([*w.train("--metric", "mse"), "--batch-size", "0"])


@case("negative-learning-rate")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--lr", "-0.001"), lambda: TrainConfig(lr=-0.001))


@case("nan-noise")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--noise", "nan"))


@case("negative-dice-weight")
def _(w: Workspace) -> Case:
    args = ["train-features", w.stack(), "--dice-weight", "-1", *TINY]
    return Case([*args, "--out", w.path("f.pt")])


@case("crop-too-small")
def _(w: Workspace) -> Case:
    return Case([*w.train("--metric", "mse"), "--crop", "4"], lambda: TrainConfig(crop=4))


@case("unknown-device")
def _(w: Workspace) -> Case:
    return Case([*w.train("--metric", "mse"), "--device", "tpu"], lambda: resolve_device("tpu"))


def _frames(w: Workspace, option: str, frames: str) -> Case:
    data = w.stack()
    return Case(
        w.train("--metric", "mse", option, frames, data=data),
        lambda: load_dataset(data, frames=parse_frames(frames)),
    )


@case("frames-outside-the-data")
def _(w: Workspace) -> Case:
    return _frames(w, "--frames", "2:20")


@case("frames-selecting-nothing")
def _(w: Workspace) -> Case:
    return _frames(w, "--val-frames", "10:12")


@case("malformed-frame-range")
def _(w: Workspace) -> Case:
    frames = "first:last"
    return Case(w.train("--metric", "mse", "--frames", frames), lambda: parse_frames(frames))


@case("reference-frame-outside-the-series")
def _(w: Workspace) -> Case:
    return Case(w.series(w.unlabelled_stack(), "--reference", "9", "--out", w.path("out")))


@case("series-of-one-frame")
def _(w: Workspace) -> Case:
    frames = np.zeros((1, 1, 32, 32), np.float32)
    return Case(
        w.series(w.unlabelled_stack(frames=1), "--out", w.path("out")),
        lambda: register_series(RegistrationNet(2, 1, SMALL), frames, "previous"),
    )


def _store(w: Workspace, axes: str = "tyx", name: str = "stack.zarr") -> Path:
    import zarr

    from src_training.data.seriesstore import image_group

    root = zarr.open_group(w.path(name), mode="w", zarr_format=2)
    shape = (4, 1, 32, 32)[: len(axes)] if "c" in axes else (4, 32, 32)[: len(axes)]
    image_group(root, "stack", shape, axes, (1.0, 1.0))[:] = w.rng.random(shape)
    return w.root / name


@case("series-store-missing-array")
def _(w: Workspace) -> Case:
    path = _store(w)
    shutil.rmtree(path / "0")
    return Case(w.series(str(path), "--out", w.path("out.zarr")), lambda: open_stack(path))


@case("series-store-wrong-axes")
def _(w: Workspace) -> Case:
    path = _store(w, axes="cyx")
    return Case(w.series(str(path), "--out", w.path("out.zarr")), lambda: open_stack(path))


@case("series-store-missing-chunk")
def _(w: Workspace) -> Case:
    path = _store(w)
    (path / "0" / "2.0.0").unlink()
    return Case(w.series(str(path), "--out", w.path("out.zarr")), lambda: open_stack(path))


@case("series-store-already-written")
def _(w: Workspace) -> Case:
    _store(w, name="out.zarr")
    return Case(w.series(str(_store(w)), "--out", w.path("out.zarr")))


@case("resume-another-series")
def _(w: Workspace) -> Case:
    _store(w, name="out.zarr")
    return Case(w.series(str(_store(w)), "--out", w.path("out.zarr"), "--resume"))


@case("resume-into-a-folder")
def _(w: Workspace) -> Case:
    return Case(w.series(str(_store(w)), "--out", w.path("out"), "--resume"))


@case("unknown-cluster")
def _(w: Workspace) -> Case:
    return Case(w.series(str(_store(w)), "--out", w.path("o.zarr"), "--cluster", "lokal"))


@case("optimise-into-a-store")
def _(w: Workspace) -> Case:
    return Case(w.series(str(_store(w)), "--out", w.path("o.zarr"), "--optimise"))


@case("training-on-one-frame")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", data=w.unlabelled_stack(frames=1)))


@case("training-pairs-naming-unknown-images")
def _(w: Workspace) -> Case:
    pairs = w.root / "pairs.csv"
    pairs.write_text("moving,fixed\nframe_a,frame_b\n")
    return Case(w.train("--metric", "mse", "--pairs", str(pairs)))


@case("register-with-one-image")
def _(w: Workspace) -> Case:
    return Case(["register", "--model", w.model(), w.image(), "--out", w.path("out")])


@case("evaluate-without-labels")
def _(w: Workspace) -> Case:
    data = w.unlabelled_stack()
    return Case(["evaluate", data, "--baseline", "identity", "--out", w.path("eval")])


@case("reference-naming-no-evaluated-model")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--baseline", "identity", "--reference", "deepsim"]
    return Case([*args, "--out", w.path("eval")])


@case("two-evaluated-models-of-one-name")
def _(w: Workspace) -> Case:
    (w.root / "a").mkdir()
    (w.root / "b").mkdir()
    models = [w.model("a/r.pt"), w.model("b/r.pt")]
    return Case(["evaluate", w.stack(), "--models", *models, "--out", w.path("eval")])


@case("register-with-neither-model-nor-optimisation")
def _(w: Workspace) -> Case:
    return Case(["register", w.image(), w.image("moving.tif"), "--out", w.path("out")])


@case("optimise-with-an-unknown-metric")
def _(w: Workspace) -> Case:
    args = ["register", "--optimise", "--metric", "ssim", w.image(), w.image("moving.tif")]
    return Case([*args, "--out", w.path("out")], lambda: build_metric("ssim"))


@case("optimise-deepsim-without-extractor")
def _(w: Workspace) -> Case:
    args = ["register", "--optimise", "--metric", "deepsim", w.image(), w.image("moving.tif")]
    return Case([*args, "--out", w.path("out")])


@case("optimise-with-no-iterations")
def _(w: Workspace) -> Case:
    args = ["register", "--optimise", "--iterations", "0", w.image(), w.image("moving.tif")]
    return Case([*args, "--out", w.path("out")], lambda: optimisation_config(iterations="0"))


@case("optimise-levels-too-deep")
def _(w: Workspace) -> Case:
    args = ["register", "--optimise", "--levels", "5", w.image(), w.image("moving.tif")]
    return Case([*args, "--out", w.path("out")])


@case("optimisation-option-without-optimise")
def _(w: Workspace) -> Case:
    return Case(w.register(w.image(), w.image("moving.tif"), "--iterations", "50"))


@case("refine-without-models")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--baseline", "identity", "--refine", "ncc"]
    return Case([*args, "--out", w.path("eval")])


@case("refine-own-unknown-metric")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--models", w.model(), "--refine", "own"]
    return Case([*args, "--out", w.path("eval")])


@case("refine-own-extractor-gone")
def _(w: Workspace) -> Case:
    torch.manual_seed(0)
    meta = {"metric": "deepsim", "features": str(w.root / "gone" / "f.pt")}
    model = str(save_model(w.root / "r.pt", RegistrationNet(2, 1, SMALL), meta))
    args = ["evaluate", w.stack(), "--models", model, "--refine", "own"]
    return Case([*args, "--out", w.path("eval")])


@case("evaluate-optimising-a-label-metric")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--optimise", "ncc-sup", "--out", w.path("eval")]
    return Case(args)


@case("malformed-zoom")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--baseline", "identity", "--figures", "--zoom", "1,2,3"]
    return Case([*args, "--out", w.path("eval")], lambda: parse_zoom("1,2,3", (32, 32)))


@case("zoom-without-figures")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--baseline", "identity", "--zoom", "0,0,8,8"]
    return Case([*args, "--out", w.path("eval")])


@case("negative-evaluation-noise")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--baseline", "identity", "--noise", "-0.1"]
    return Case([*args, "--out", w.path("eval")])


@case("elastix-not-installed")
def _(w: Workspace) -> Case:
    w.monkeypatch.setitem(sys.modules, "itk", None)
    args = ["evaluate", w.stack(), "--baseline", "elastix", "--out", w.path("eval")]
    return Case(args, ElastixBSpline)


@case("ants-not-installed")
def _(w: Workspace) -> Case:
    w.monkeypatch.setitem(sys.modules, "ants", None)
    args = ["evaluate", w.stack(), "--baseline", "ants", "--out", w.path("eval")]
    return Case(args, AntsSyN)


@case("ants-setting-without-ants")
def _(w: Workspace) -> Case:
    args = ["evaluate", w.stack(), "--baseline", "identity", "--ants-metric", "mi"]
    return Case([*args, "--out", w.path("eval")])


@case("curves-of-a-run-without-validation")
def _(w: Workspace) -> Case:
    log = w.root / "r.csv"
    log.write_text("step,seconds,loss,similarity,regularisation,val_dice,val_loss\n1,0.5,0.9,,,,\n")
    args = ["curves", str(log), "--out", w.path("convergence.png")]
    return Case(args, lambda: read_validation_curve(log))


@case("curves-with-too-few-names")
def _(w: Workspace) -> Case:
    logs = [w.path("a.csv"), w.path("b.csv")]
    return Case(["curves", *logs, "--names", "a", "--out", w.path("convergence.png")])


@case("label-metric-without-labels")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "ncc-sup", data=w.unlabelled_stack()))


@case("deepsim-without-features")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "deepsim"))


@case("feature-levels-beyond-the-encoder")
def _(w: Workspace) -> Case:
    return Case(
        w.train("--metric", "deepsim", "--features", w.features(), "--feature-levels", "1,9")
    )


@case("feature-levels-for-another-metric")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--feature-levels", "1"))


def _optimise_features(w: Workspace, metric: str, *options: str) -> Case:
    args = ["register", "--optimise", "--metric", metric, "--features", w.features()]
    return Case([*args, *options, w.image(), w.image("moving.tif"), "--out", w.path("out")])


@case("negative-feature-weight")
def _(w: Workspace) -> Case:
    return _optimise_features(w, "deepsim+mse", "--feature-weight", "-1")


@case("pca-beyond-the-feature-channels")
def _(w: Workspace) -> Case:
    return _optimise_features(w, "deepsim+ncc", "--pca", "20")


@case("infinite-class-probability-weight")
def _(w: Workspace) -> Case:
    return _optimise_features(w, "deepsim-seg+ncc", "--feature-weight", "inf")


@case("feature-options-for-the-class-probabilities")
def _(w: Workspace) -> Case:
    return _optimise_features(w, "deepsim-seg+ncc", "--pca", "4")


@case("feature-options-for-another-metric")
def _(w: Workspace) -> Case:
    args = ["register", "--optimise", "--metric", "ncc", "--pca", "4", w.image()]
    return Case([*args, w.image("moving.tif"), "--out", w.path("out")])


@case("three-extractors")
def _(w: Workspace) -> Case:
    args = ["register", "--optimise", "--metric", "deepsim-seg:a.pt,b.pt,c.pt", w.image()]
    return Case([*args, w.image("moving.tif"), "--out", w.path("out")])


@case("an-extractor-per-image-for-another-metric")
def _(w: Workspace) -> Case:
    features = w.features()
    args = ["register", "--optimise", "--metric", f"deepsim:{features},{features}", w.image()]
    return Case([*args, w.image("moving.tif"), "--out", w.path("out")])


@case("extractors-per-image-for-a-metric-without-one")
def _(w: Workspace) -> Case:
    features = w.features()
    args = ["register", "--optimise", "--metric", f"ncc:{features},{features}", w.image()]
    return Case([*args, w.image("moving.tif"), "--out", w.path("out")])


@case("extractors-per-image-of-other-classes")
def _(w: Workspace) -> Case:
    fixed, moving = w.features("us.pt"), w.features("mr.pt", classes=3)
    args = ["register", "--optimise", "--metric", f"deepsim-seg:{fixed},{moving}", w.image()]
    return Case([*args, w.image("moving.tif"), "--out", w.path("out")])


@case("feature-extractor-as-registration-model")
def _(w: Workspace) -> Case:
    return Case(w.register(w.image(), w.image("moving.tif"), model="prostate-mr-us-3d"))


@case("resume-without-checkpoint")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", "--resume"))


# --- outputs ------------------------------------------------------------------------------


@case("unwritable-output-folder")
def _(w: Workspace) -> Case:
    folder = w.root / "read_only"
    folder.mkdir()
    os.chmod(folder, 0o555)
    if _can_create_in(folder):  # root writes through permission bits, but not into sysfs
        folder = Path("/sys")
        if not folder.is_dir() or _can_create_in(folder):
            pytest.skip("no folder that this user cannot write to")
    return Case(w.train("--metric", "mse", out=str(folder / "r.pt")))


def _can_create_in(folder: Path) -> bool:
    probe = folder / ".deepsim-probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


@case("output-folder-inside-a-file")
def _(w: Workspace) -> Case:
    (w.root / "notes.txt").write_text("not a folder")
    args = w.register(w.image(), w.image("moving.tif"))
    return Case([*args[:-1], w.path("notes.txt/results")])


@case("output-folder-missing")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", out="no_such_folder/r.pt"))


@case("output-not-a-pt-file")
def _(w: Workspace) -> Case:
    return Case(w.train("--metric", "mse", out="model.pth"))


@case("existing-model-file")
def _(w: Workspace) -> Case:
    w.model("out.pt")
    return Case(w.train("--metric", "mse"))


@case("existing-checkpoint")
def _(w: Workspace) -> Case:
    w.model("out.last.pt")
    return Case(w.train("--metric", "mse"))


@case("existing-registration-results")
def _(w: Workspace) -> Case:
    (w.root / "out").mkdir()
    (w.root / "out" / "warped.tif").write_bytes(b"results of yesterday")
    return Case(w.register(w.image(), w.image("moving.tif")))


# --- model files --------------------------------------------------------------------------


def _info(path: Path | str) -> Case:
    return Case(["info", str(path)], lambda: load_model(path))


@case("empty-model-file")
def _(w: Workspace) -> Case:
    (w.root / "empty.pt").write_bytes(b"")
    return _info(w.root / "empty.pt")


@case("corrupt-model-file")
def _(w: Workspace) -> Case:
    (w.root / "corrupt.pt").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    return _info(w.root / "corrupt.pt")


@case("truncated-model-file")
def _(w: Workspace) -> Case:
    whole = Path(w.model("whole.pt")).read_bytes()
    (w.root / "cut.pt").write_bytes(whole[: len(whole) // 2])
    return _info(w.root / "cut.pt")


@case("model-from-a-newer-version")
def _(w: Workspace) -> Case:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(modelio, "FORMAT_VERSION", modelio.FORMAT_VERSION + 1)
        path = w.model("new.pt")
    return _info(path)


class _Exploit:
    """Pickles to a call of ``os.system``: loading it unsafely would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@case("pickle-posing-as-model")
def _(w: Workspace) -> Case:
    path = w.root / "evil.pt"
    # the marker would be a new file in the case's folder, which the snapshot forbids
    torch.save({"format": modelio.FORMAT, "payload": _Exploit(w.root / "pwned")}, path)
    return _info(path)


def _flip_a_byte(path: Path | str) -> Path:
    path = Path(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # in a tensor's bytes: torch alone would load the file
    path.write_bytes(bytes(data))
    return path


@case("model-with-a-flipped-byte")
def _(w: Workspace) -> Case:
    model = _flip_a_byte(w.model())
    return Case(
        w.register(w.image(), w.image("moving.tif"), model=str(model)), lambda: load_model(model)
    )


@case("model-with-its-end-cut-off")
def _(w: Workspace) -> Case:
    whole = Path(w.model("whole.pt")).read_bytes()
    (w.root / "cut.pt").write_bytes(whole[:-1])
    return _info(w.root / "cut.pt")


@case("zip-of-another-program-as-model")
def _(w: Workspace) -> Case:
    with zipfile.ZipFile(w.root / "notes.pt", "w") as archive:
        archive.writestr("notes.txt", "not a model")
    return _info(w.root / "notes.pt")


@case("damaged-model-without-checksum")
def _(w: Workspace) -> Case:
    path = w.root / "old.pt"  # as saved before model files carried a checksum
    metadata = '{"kind": "registration", "network": {"ndim": 2'
    torch.save({"format": modelio.FORMAT, "format_version": 1, "metadata": metadata}, path)
    return _info(path)


@case("damaged-checkpoint-on-resume")
def _(w: Workspace) -> Case:
    _flip_a_byte(w.model("out.last.pt"))
    return Case(w.train("--metric", "mse", "--resume"))


@case("model-as-checkpoint-on-resume")
def _(w: Workspace) -> Case:
    w.model("out.last.pt")  # a model file has no optimiser state to resume from
    return Case(w.train("--metric", "mse", "--resume"))


@case("model-path-is-a-folder")
def _(w: Workspace) -> Case:
    (w.root / "models").mkdir()
    return _info(w.root / "models")


@case("not-a-model-file")
def _(w: Workspace) -> Case:
    return _info(w.image())


@case("registration-model-as-features")
def _(w: Workspace) -> Case:
    model = w.model()
    return Case(
        w.train("--metric", "deepsim", "--features", model),
        lambda: require_kind(load_model(model), "features", model),
    )


@case("features-as-registration-model")
def _(w: Workspace) -> Case:
    return Case(w.register(w.image(), w.image("moving.tif"), model=w.features()))


@case("registration-model-as-vgg-weights")
def _(w: Workspace) -> Case:
    model = w.model()
    return Case(
        w.train("--metric", "vgg", "--vgg-weights", model),
        lambda: get_metric("vgg", weights=model),
    )


# --- points and field files ---------------------------------------------------------------


def _points(w: Workspace, text: str) -> Case:
    path = w.root / "points.csv"
    path.write_text(text)
    return Case(
        w.register(w.image(), w.image("moving.tif"), "--points", str(path)),
        lambda: read_points_csv(path, 2),
    )


@case("points-csv-without-axis-columns")
def _(w: Workspace) -> Case:
    return _points(w, "x,y\n1,2\n")


@case("points-csv-with-a-non-number")
def _(w: Workspace) -> Case:
    return _points(w, "index,axis-0,axis-1\n0,4,5\n1,3.5,abc\n")


@case("points-csv-of-another-dimensionality")
def _(w: Workspace) -> Case:
    return _points(w, "index,axis-0,axis-1,axis-2\n0,1,2,3\n")


@case("points-csv-with-a-short-line")
def _(w: Workspace) -> Case:
    return _points(w, "index,axis-0,axis-1\n0,4\n")


@case("points-with-a-series")
def _(w: Workspace) -> Case:
    path = w.root / "points.csv"
    path.write_text("index,axis-0,axis-1\n0,4,5\n")
    return Case(w.series(w.stack(), "--points", str(path), "--out", w.path("out")))


@case("export-field-of-an-image-archive")
def _(w: Workspace) -> Case:
    path = w.stack("images.npz")
    return Case(["export-field", path, w.path("field.mha")], lambda: load_field(path))


@case("export-field-of-a-missing-file")
def _(w: Workspace) -> Case:
    path = w.path("gone.npz")
    return Case(["export-field", path, w.path("field.mha")], lambda: load_field(path))


@case("export-field-to-another-format")
def _(w: Workspace) -> Case:
    path = save_field(w.root / "field.npz", FieldFile(np.zeros((2, 8, 8), np.float32)))
    return Case(["export-field", str(path), w.path("field.tif")])


def _mr_us_pair(w: Workspace, fixed_channels: int = 2) -> str:
    """A paired NIfTI layout of one case: 3D volumes with per-channel label masks."""
    import nibabel as nib

    root = w.root / "pair"
    for role, shape, channels in (("moving", (12, 12, 10), 2), ("fixed", (8, 10, 8), None)):
        channels = fixed_channels if channels is None else channels
        for kind, array in (
            ("images", w.rng.random(shape).astype(np.float32)),
            ("labels", (w.rng.random((*shape, channels)) > 0.5).astype(np.uint8)),
        ):
            (root / f"{role}_{kind}").mkdir(parents=True, exist_ok=True)
            affine = np.diag([0.4, 0.4, 0.4, 1.0])
            nib.save(nib.Nifti1Image(array, affine), root / f"{role}_{kind}" / "case0.nii.gz")
    return str(root)


@case("paired-label-channels-differ")
def _(w: Workspace) -> Case:
    data = _mr_us_pair(w, fixed_channels=3)
    argv = ["evaluate", data, "--baseline", "identity", "--out", w.path("out")]
    return Case(argv, lambda: load_dataset(data))


@case("landmarks-not-a-label-value")
def _(w: Workspace) -> Case:
    data = _mr_us_pair(w)
    argv = ["evaluate", data, "--baseline", "identity", "--landmarks", "2,7"]
    return Case([*argv, "--out", w.path("out")])


# --- handled inputs: exit 0 -----------------------------------------------------------------


@dataclass
class Handled:
    """A run that succeeds, and a check of what it wrote."""

    argv: list[str]
    check: Callable[[Path, str], None]


HANDLED: dict[str, Callable[[Workspace], Handled]] = {}


def handled(name: str):
    def register(build: Callable[[Workspace], Handled]) -> Callable[[Workspace], Handled]:
        HANDLED[name] = build
        return build

    return register


def _warped(out: Path) -> np.ndarray:
    return tifffile.imread(out / "warped.tif")


@handled("colour-png")
def _(w: Workspace) -> Handled:
    rgb = w.array("rgb.png", (w.rng.random((32, 32, 3)) * 255).astype(np.uint8))

    def check(out: Path, stdout: str) -> None:
        assert _warped(out).shape == (32, 32)

    return Handled(w.register(w.image(), rgb), check)


@handled("colour-tiff-stack")
def _(w: Workspace) -> Handled:
    rgb = (w.rng.random((3, 32, 32, 3)) * 255).astype(np.uint8)
    path = w.root / "rgb_frames.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    args = w.series(str(path), "--out", w.path("out"))

    def check(out: Path, stdout: str) -> None:
        assert np.load(out / "displacements.npz")["displacement"].shape == (3, 2, 32, 32)

    return Handled(args, check)


@handled("fixed-and-moving-of-different-shapes")
def _(w: Workspace) -> Handled:
    def check(out: Path, stdout: str) -> None:
        said = "placing the moving image (40, 24) on the fixed grid (32, 32) corner onto corner"
        assert said in stdout
        assert _warped(out).shape == (32, 32)

    return Handled(w.register(w.image(), w.image("moving.tif", (40, 24))), check)


@handled("image-smaller-than-the-network-depth")
def _(w: Workspace) -> Handled:
    tiny = w.image("tiny.tif", (3, 3))

    def check(out: Path, stdout: str) -> None:
        assert np.load(out / "displacement.npz")["displacement"].shape == (2, 3, 3)

    return Handled(w.register(tiny, tiny), check)


@handled("empty-moving-labels")
def _(w: Workspace) -> Handled:
    labels = w.array("labels.tif", np.zeros((32, 32), np.uint8))

    def check(out: Path, stdout: str) -> None:
        assert not tifffile.imread(out / "warped_labels.tif").any()

    return Handled(w.register(w.image(), w.image("moving.tif"), "--labels", labels), check)


# --- the tests ----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with the hash of its bytes."""
    state = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_dir():
            state[key] = "folder"
            continue
        data = _readable(path)
        stat = path.stat()
        state[key] = f"unreadable {stat.st_size} {stat.st_mtime_ns}"
        if data is not None:
            state[key] = hashlib.sha256(data).hexdigest()
    return state


@dataclass(frozen=True)
class Row:
    """One row of the table in docs/errors.md."""

    input: str
    message: str
    exit_code: int


def documented() -> dict[str, Row]:
    """The rows of docs/errors.md by case id."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.fullmatch(r"\| `([a-z0-9-]+)` \| (.+) \| (.+) \| (\d+) \|", line)
        if match:
            name, text, message, code = match.groups()
            rows[name] = Row(text, _code_span(message), int(code))
    return rows


def _code_span(cell: str) -> str:
    """The text of a Markdown code span (single or double backticks), else the cell."""
    match = re.fullmatch(r"``? ?(.*?) ?``?", cell.strip())
    return match[1] if match else cell.strip()


def matches(pattern: str, message: str) -> bool:
    """Whether ``message`` is ``pattern`` with each ``…`` standing for any text."""
    regex = ".*?".join(re.escape(part) for part in pattern.split("…"))
    return re.fullmatch(regex, message) is not None


def test_the_corpus_is_large_and_documented_row_for_row():
    rows = documented()
    assert len(CASES) >= 30
    assert sorted(rows) == sorted([*CASES, *HANDLED])
    count = f"The corpus has {len(CASES)} refused and {len(HANDLED)} handled cases."
    assert count in " ".join(DOC.read_text().split())
    assert all(rows[name].exit_code == 2 for name in CASES)
    assert all(rows[name].exit_code == 0 for name in HANDLED)


def run_case(build, tmp_path, monkeypatch, capsys):
    """Build a case in its own folder, snapshot the folder and run the command."""
    work = tmp_path / "case"
    work.mkdir()
    built = build(Workspace(work, monkeypatch))
    before = snapshot(work)
    code = main(built.argv)
    return work, built, before, code, capsys.readouterr()


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_gives_one_line_and_changes_nothing(name, tmp_path, capsys, monkeypatch):
    work, built, before, code, captured = run_case(CASES[name], tmp_path, monkeypatch, capsys)
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), captured.err
    assert "Traceback" not in captured.err
    message = lines[0].removeprefix(ERROR_PREFIX)
    assert FIX.search(message), f"the message names no fix: {message}"
    assert snapshot(work) == before
    shown = message.replace(f"{work}/", "")
    assert matches(documented()[name].message, shown), f"docs/errors.md is stale: {shown}"
    if built.api is not None:
        with pytest.raises((ValueError, OSError)) as raised:
            built.api()
        assert str(raised.value) == message
        assert snapshot(work) == before


@pytest.mark.parametrize("name", list(HANDLED))
def test_handled_input_succeeds_and_keeps_the_inputs(name, tmp_path, capsys, monkeypatch):
    work, built, before, code, captured = run_case(HANDLED[name], tmp_path, monkeypatch, capsys)
    assert code == 0, captured.err
    assert captured.err == ""
    after = snapshot(work)
    assert {key: after[key] for key in before} == before
    built.check(work / "out", captured.out)


def test_an_image_of_almost_one_value_is_registered_with_a_warning(tmp_path, monkeypatch, capsys):
    w = Workspace(tmp_path, monkeypatch)
    sparse = np.zeros((40, 40), np.float32)
    sparse[18:21, 18:21] = 1.0  # 9 of 1600 pixels: 99.4 % one value
    argv = w.register(w.image("fixed.tif", (40, 40)), w.array("sparse.tif", sparse))
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "sparse.tif is 99.4 % one value (0); only its other pixels guide" in err
    assert "fixed.tif is" not in err  # a textured image gets no such warning


def test_debug_shows_the_traceback_of_a_corpus_case(tmp_path, monkeypatch):
    built = CASES["nan-pixels"](Workspace(tmp_path, monkeypatch))
    with pytest.raises(ValueError, match="contains NaN or inf values"):
        main(["--debug", *built.argv])


def test_overwrite_restarts_the_curves_instead_of_appending(tmp_path, monkeypatch):
    args = Workspace(tmp_path, monkeypatch).train("--metric", "mse", "--steps", "2")
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["step", "1", "2"]
