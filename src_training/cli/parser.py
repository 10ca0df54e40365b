"""The ``deepsim`` argument parser: one sub-command per task, usage errors on one line."""

from __future__ import annotations

import argparse
from typing import NoReturn

from src_training import __version__
from src_training.cli.options import add_optimisation_options, positive_int
from src_training.runtime.devices import DEVICE_CHOICES

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        """Print ``deepsim: error: MESSAGE; see `deepsim ... --help``` and exit with 2."""
        self.exit(EXIT_USAGE, f"deepsim: error: {message}; see `{self.prog} --help`\n")


def _add_data_options(p: argparse.ArgumentParser, frames_help: str) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--frames", metavar="A:B", help=frames_help)
    g.add_argument(
        "--labels",
        choices=("classes", "foreground", "none"),
        default="classes",
        help="label values as contiguous classes (default), foreground/background, or ignored",
    )
    g.add_argument(
        "--ndim", type=int, choices=(2, 3), help="read a 3D array as one volume (3) or frames (2)"
    )
    g.add_argument("--label-file", metavar="FILE", help="label stack of a multi-frame image file")
    g.add_argument("--atlas", metavar="FILE", help="register every image to this atlas image")
    g.add_argument("--atlas-labels", metavar="FILE", help="label map of the atlas")


def _add_training_options(p: argparse.ArgumentParser, default_steps: int) -> None:
    _add_data_options(p, "training frames (or volumes, or cases), e.g. 0:20; default all")
    g = p.add_argument_group("training")
    g.add_argument("--out", required=True, metavar="FILE.pt", help="model file to write")
    g.add_argument("--val-frames", metavar="A:B", help="validation frames of DATA, e.g. 20:25")
    g.add_argument("--steps", type=int, default=default_steps, help=f"default {default_steps}")
    g.add_argument("--crop", type=int, help="side of random training crops (pixels/voxels)")
    g.add_argument("--batch-size", type=positive_int, default=4, help="default 4")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    g.add_argument(
        "--channels", help="U-Net encoder channels (default 64,128,256, or those of --init)"
    )
    g.add_argument(
        "--init",
        metavar="NAME|FILE",
        help="fine-tune: start from this model's weights (a built-in name or a model file)",
    )
    g.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    g.add_argument("--seed", type=int, default=0, help="default 0")
    g.add_argument("--resume", action="store_true", help="continue from FILE.last.pt")
    g.add_argument("--overwrite", action="store_true", help="replace an existing FILE.pt")
    g.add_argument("--val-every", type=positive_int, default=100, help="default 100 steps")
    g.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=100,
        help="save FILE.last.pt every N steps (default 100)",
    )
    g.add_argument("--no-augment", action="store_true", help="no random affine augmentation")
    g.add_argument("--noise", type=float, help="std of added noise (0; --self-supervised 0.3)")
    g = p.add_argument_group("speed and memory")
    _add_precision_option(g)
    g.add_argument(
        "--checkpointing",
        action="store_true",
        help="activation checkpointing: recompute U-Net stages in the backward pass (less memory)",
    )
    g.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    g.add_argument(
        "--log-every",
        type=positive_int,
        metavar="N",
        help="read the losses from the device every N steps (default 1 on a CPU, 10 on a GPU)",
    )


def _add_precision_option(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--precision",
        default="auto",
        metavar="P",
        help="auto, fp32, bf16 or fp16 (autocast of the networks); auto = bf16 on GPUs that "
        "support it, fp32 on CPUs",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``deepsim`` command.

    Returns
    -------
    argparse.ArgumentParser
        The parser with one sub-command per task.
    """
    parser = _Parser(
        prog="deepsim",
        description="Learned deformable image registration with semantic similarity metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("metrics", help="list the similarity metrics and their default lambda")
    p.set_defaults(handler="metrics")

    p = sub.add_parser("models", help="list the built-in models (use their names as model files)")
    p.set_defaults(handler="models")

    p = sub.add_parser(
        "fetch", help="download a public dataset once into the cache (checked by SHA-256)"
    )
    p.add_argument("name", metavar="NAME", help="PhC-C2DH-U373 (Cell Tracking Challenge)")
    p.add_argument(
        "--cache", metavar="DIR", help="cache folder (default $DEEPSIM_CACHE, else the user cache)"
    )
    p.add_argument("--sha256", help="expected SHA-256 of the archive, to pin a known copy")
    p.set_defaults(handler="fetch")

    p = sub.add_parser(
        "demo",
        help="every way of registering the built-in noisy cell sample, clean and noisy",
    )
    p.add_argument(
        "--steps", type=int, default=150, help="training steps of each model (default 150)"
    )
    p.add_argument("--out", default="demo", help="folder of the figure overview.png (default demo)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(handler="demo")

    p = sub.add_parser("train-features", help="train the feature extractor DeepSim compares")
    p.add_argument("data", metavar="DATA", help="dataset folder or multi-frame file")
    p.add_argument("--kind", choices=("segmentation", "autoencoder"), help="default segmentation")
    p.add_argument(
        "--self-supervised",
        action="store_true",
        help="no labels: a denoising autoencoder of two noisy views per crop (for deepsim-ae)",
    )
    p.add_argument("--dice-weight", type=float, default=0.0, help="weight of a soft Dice term")
    _add_training_options(p, default_steps=1000)
    p.set_defaults(handler="train_features")

    p = sub.add_parser("train", help="train a registration model with a similarity metric")
    p.add_argument("data", metavar="DATA", help="dataset folder or multi-frame file")
    p.add_argument("--metric", required=True, help="see `deepsim metrics`")
    p.add_argument(
        "--features",
        metavar="NAME|F.pt",
        help="feature extractor (deepsim, deepsim-ae): a built-in name or a file",
    )
    p.add_argument(
        "--feature-levels",
        metavar="L,L",
        help="encoder stages DeepSim compares, 1 = half resolution (default: all)",
    )
    p.add_argument("--vgg-weights", metavar="FILE", help="torchvision VGG16 state dict (vgg)")
    p.add_argument("--lam", type=float, help="regulariser weight (default: the metric's)")
    p.add_argument("--regulariser", choices=("diffusion", "bending"), default="diffusion")
    p.add_argument("--diffeomorphic", action="store_true", help="integrate a velocity field")
    p.add_argument("--max-offset", type=positive_int, default=2, help="pair distance (2)")
    p.add_argument("--pairs", metavar="CSV", help="explicit training pairs (moving,fixed)")
    _add_training_options(p, default_steps=1000)
    p.set_defaults(handler="train_registration")

    p = sub.add_parser(
        "register", help="register images with a trained model, by optimisation, or both"
    )
    p.add_argument(
        "--model",
        metavar="NAME|R.pt",
        help="a built-in name or a model file (with --optimise: its prediction is refined)",
    )
    p.add_argument("images", nargs="*", metavar="FIXED MOVING", help="the fixed and moving image")
    p.add_argument(
        "--labels",
        nargs="+",
        default=[],
        metavar="FILE",
        help="moving label maps (with --series: one label stack of the frames)",
    )
    p.add_argument("--fixed-labels", metavar="FILE", help="fixed labels: prints Dice")
    p.add_argument(
        "--points",
        nargs="+",
        default=[],
        metavar="FILE.csv",
        help="landmarks of the moving image (napari's Points CSV: index,axis-0,axis-1 in "
        "voxels) written moved onto the fixed image as moved_FILE.csv",
    )
    p.add_argument(
        "--itk-field",
        choices=("nii.gz", "mha"),
        help="also write the field as an ITK displacement field transform (physical units)",
    )
    p.add_argument("--series", metavar="STACK", help="register every frame of a stack instead")
    p.add_argument("--reference", default="0", help="frame index or 'previous' (series)")
    p.add_argument("--ndim", type=int, choices=(2, 3), help="how to read a 3D series array")
    p.add_argument(
        "--out",
        default="registered",
        metavar="DIR",
        help="default ./registered; with --series, OUT.zarr writes an OME-Zarr store as it goes",
    )
    p.add_argument(
        "--resume", action="store_true", help="complete the store OUT.zarr a stopped run left"
    )
    p.add_argument(
        "--cluster",
        metavar="local[:N]|tcp://ADDRESS",
        help="register a series' frame pairs on Dask workers (local: N processes, 1 thread each)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing results in DIR")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=positive_int, default=8, help="frames per pass")
    _add_precision_option(p)
    g = add_optimisation_options(p)
    g.add_argument(
        "--optimise",
        action="store_true",
        help="optimise each field for its pair (from --model's prediction, or the identity)",
    )
    g.add_argument("--metric", help="similarity to optimise (default ncc; see `deepsim metrics`)")
    g.add_argument(
        "--features",
        metavar="NAME|F.pt",
        help="feature extractor (deepsim, deepsim-ae, ...); deepsim-seg also takes "
        "FIXED.pt,MOVING.pt, one extractor per image",
    )
    g.add_argument("--vgg-weights", metavar="FILE", help="torchvision VGG16 state dict (vgg)")
    g.add_argument("--seed", type=int, default=0, help="seed of the optimisation (default 0)")
    p.set_defaults(handler="register")

    p = sub.add_parser("evaluate", help="Dice, folding and speed of models on test pairs")
    p.add_argument("data", metavar="DATA")
    p.add_argument(
        "--models",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME|R.pt",
        help="built-in names or model files (a row is named by the name or file stem); "
        "repeat --models to add more",
    )
    p.add_argument(
        "--baseline",
        action="append",
        choices=("identity", "elastix", "elastix-mi", "ants"),
        default=[],
        help=(
            "add a baseline row; repeat for several (elastix: its B-spline; elastix-mi: "
            "affine then B-spline on mutual information, for two modalities; ants: ANTsPy's "
            "SyN; all need napari-deepsim[baselines])"
        ),
    )
    p.add_argument(
        "--ants-metric",
        choices=("cc", "mi"),
        default="cc",
        help="SyN similarity of --baseline ants: cc (same modality, default) or mi (multimodal)",
    )
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        metavar="N",
        help="--baseline ants once per seed 1..N (mean and spread over seeds; default 1)",
    )
    p.add_argument(
        "--landmarks",
        metavar="V,V",
        help=(
            "label values that mark landmarks: each pair also gets the target registration "
            "error between their centroids (mm where the files record the voxel size)"
        ),
    )
    p.add_argument("--pairs", metavar="CSV", help="explicit test pairs (moving,fixed)")
    g = add_optimisation_options(p)
    g.add_argument(
        "--optimise",
        action="append",
        default=[],
        metavar="METRIC[:F.pt]",
        help="a row optimising each pair from the identity, e.g. ncc, deepsim:features.pt or "
        "deepsim-seg:FIXED.pt,MOVING.pt (one extractor per image)",
    )
    g.add_argument(
        "--refine",
        action="append",
        default=[],
        metavar="METRIC[:F.pt]",
        help=(
            "a row per --models entry refining its prediction by optimisation; "
            "'own': with the metric each model was trained with (ncc for ncc-sup)"
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--device", default="auto")
    _add_precision_option(p)
    g = p.add_argument_group("statistics")
    g.add_argument(
        "--reference",
        metavar="NAME",
        help="test every other row against this model (Wilcoxon, Cohen's d on per-pair Dice)",
    )
    g.add_argument("--hd95", action="store_true", help="95th-percentile Hausdorff distance")
    g.add_argument(
        "--noise",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="add Gaussian noise of this std to both images",
    )
    g.add_argument("--seed", type=int, default=0, metavar="N", help="seed of --noise (default 0)")
    g = p.add_argument_group("figures")
    g.add_argument(
        "--figures", action="store_true", help="write dice_boxplot, qualitative, jacobian PNGs"
    )
    g.add_argument("--zoom", metavar="R0,C0,R1,C1", help="region shown enlarged in qualitative")
    g.add_argument(
        "--grid-spacing",
        type=positive_int,
        default=16,
        metavar="N",
        help="grid line distance in pixels (default 16)",
    )
    _add_data_options(p, "test frames, e.g. 25:30 (consecutive pairs); default all")
    p.set_defaults(handler="evaluate")

    p = sub.add_parser(
        "curves", help="plot validation Dice of training runs against step and wall time"
    )
    p.add_argument("logs", nargs="+", metavar="R.csv", help="training logs (beside R.pt)")
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.add_argument("--names", nargs="+", metavar="NAME", help="one per log (default: file stems)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE.png")
    p.set_defaults(handler="curves")

    p = sub.add_parser(
        "export-field", help="write a saved displacement field as an ITK displacement field"
    )
    p.add_argument("field", metavar="FIELD", help="displacement.npz (or an older .npy field)")
    p.add_argument("out", metavar="OUT", help="ITK transform file to write: .nii.gz or .mha")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(handler="export_field")

    p = sub.add_parser("info", help="show a built-in model's card, or what a model file holds")
    p.add_argument("model", metavar="NAME|FILE.pt")
    p.set_defaults(handler="info")
    return parser
