"""``deepsim register --series STACK --out OUT.zarr``: a series of any length into a store.

Frames are read one at a time (Zarr/OME-Zarr stores and TIFFs lazily), registered here or
on a Dask cluster (``--cluster``), and written to an OME-Zarr store as they finish;
``--resume`` completes a store an interrupted run left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from src_training.data.datasets import load_dataset
from src_training.data.lazy import FrameSource, is_lazy_stack, is_zarr, open_stack
from src_training.engine.cluster import check_cluster
from src_training.engine.registration import Progress, run_to_end
from src_training.engine.stored import register_stack_to_store
from src_training.networks.modelio import ModelFile


def writes_store(args: argparse.Namespace) -> bool:
    """Tell whether ``deepsim register`` writes a store, refusing store-only flags otherwise.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``register`` options.

    Returns
    -------
    bool
        ``--series`` with an ``--out`` ending in ``.zarr``.
    """
    store = bool(args.series) and Path(args.out).suffix == ".zarr"
    flags = [
        flag for flag, used in (("--resume", args.resume), ("--cluster", args.cluster)) if used
    ]
    if flags and not store:
        raise ValueError(
            f"{flags[0]} applies to a series written to a store; pass --series STACK --out OUT.zarr"
        )
    if store:
        unsupported = [
            flag
            for flag, used in (("--optimise", args.optimise), ("--labels", args.labels))
            if used
        ]
        if unsupported:
            raise ValueError(
                f"{unsupported[0]} does not work with a store (--out OUT.zarr) yet; choose a "
                "folder --out instead"
            )
    return store


def read_series(path: str, ndim: int | None) -> FrameSource:
    """Read the frames of ``--series``: lazily from a store or TIFF, else whole.

    Parameters
    ----------
    path : str
        The stack.
    ndim : int or None
        ``--ndim``.

    Returns
    -------
    FrameSource
        Its frames.
    """
    if is_lazy_stack(path):
        return open_stack(path, ndim)
    stack = load_dataset(path, labels="none", ndim=ndim)
    return FrameSource(stack.images, stack.ndim, path, stack.spacing)


def register_store(
    model: ModelFile | None, args: argparse.Namespace, device: Any, reference: int | str
) -> None:
    """Register ``--series`` into the store ``--out``, printing progress and a summary.

    Parameters
    ----------
    model : ModelFile or None
        The registration model (required).
    args : argparse.Namespace
        The parsed ``register`` options.
    device : torch.device
        Where the network runs without ``--cluster``.
    reference : int or "previous"
        The parsed ``--reference``.
    """
    if model is None:
        raise ValueError("a series written to a store needs --model NAME|R.pt")
    if args.cluster:
        check_cluster(args.cluster)
    if is_zarr(args.series) and Path(args.series).resolve() == Path(args.out).resolve():
        raise ValueError(f"--out {args.out} is the input store; choose another --out")
    frames = read_series(args.series, args.ndim)
    job = register_stack_to_store(
        model,
        frames,
        reference,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        cluster=args.cluster,
        device=device,
        batch_size=args.batch_size,
        precision=args.precision,
        method=str(args.model),
        what=args.series,
    )
    every = max(1, len(frames) // 20)

    def show(event: Progress) -> None:
        if event.done % every == 0:
            print(f"{event.what} ({event.done}/{event.total})", file=sys.stderr, flush=True)

    result = run_to_end(job, show)
    for line in result.warnings:
        print(f"deepsim: warning: {line}", file=sys.stderr)
    where = f"on {args.cluster} " if args.cluster else ""
    kept = f", {result.skipped} finished before" if result.skipped else ""
    print(
        f"registered {result.written} frames of {args.series} to {args.reference} {where}"
        f"in {result.seconds:.2f} s ({result.written / max(result.seconds, 1e-9):.1f} frames/s"
        f"{kept}); folding {result.folding_percent:.3f} % (every frame but the reference)"
    )
    print(f"wrote the OME-Zarr store {result.path} (warped 0, fields/0, jacobians/0, metrics)")
