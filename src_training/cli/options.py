"""Option groups and value types the ``deepsim`` sub-commands share."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """Read a positive integer option (argparse ``type``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_optimisation_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the per-pair optimisation options of ``register`` and ``evaluate``; return the group."""
    g = p.add_argument_group("instance optimisation (per pair)")
    g.add_argument(
        "--iterations",
        metavar="N[,N...]",
        help=(
            "Adam iterations per pyramid level, coarse to fine "
            "(default 100,50,25,5; 20,10,5 when refining a model)"
        ),
    )
    g.add_argument(
        "--levels", type=positive_int, metavar="L", help="pyramid levels (default: up to 4)"
    )
    linear = g.add_mutually_exclusive_group()
    linear.add_argument(
        "--affine",
        dest="linear",
        action="store_const",
        const="affine",
        help="affine stage first (the default when refining a model)",
    )
    linear.add_argument(
        "--rigid", dest="linear", action="store_const", const="rigid", help="rigid stage first"
    )
    linear.add_argument(
        "--no-linear",
        dest="linear",
        action="store_const",
        const="none",
        help="no linear stage (the default from the identity; refining runs --affine)",
    )
    g.add_argument(
        "--lam",
        type=float,
        help="regulariser weight (default: the metric's; 1.5 times it when refining)",
    )
    g.add_argument(
        "--transform",
        choices=("bspline", "dense"),
        default="bspline",
        help="B-spline control grid (default) or a smoothed dense field",
    )
    g.add_argument(
        "--diffeomorphic", action="store_true", help="optimise a velocity field and integrate it"
    )
    g.add_argument(
        "--feature-weight",
        type=float,
        metavar="W",
        help="weight of the feature term of deepsim-maps, deepsim+mse, deepsim+ncc (default 1, "
        "0.1, 0.5) and of the class-probability term of deepsim-seg, deepsim-seg+ncc (1, 9)",
    )
    g.add_argument(
        "--pca",
        type=int,
        metavar="K",
        help="reduce their feature channels to K principal components of both images (default 4)",
    )
    g.add_argument(
        "--feature-distance",
        choices=("mse", "ncc", "cosine"),
        help="their distance between normalised feature maps (default mse)",
    )
    g.add_argument(
        "--feature-stages",
        choices=("all", "coarse"),
        help="every encoder stage at every pyramid level (default), or none finer than the level",
    )
    g.add_argument(
        "--warp-then-extract",
        action="store_true",
        help="recompute their features of the warped image every iteration (slower)",
    )
    return g
