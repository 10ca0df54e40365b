"""``deepsim register``: a pair or a whole series through the engine, results written."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from src_training.data.datasets import load_dataset, load_image_file, load_label_file
from src_training.data.writing import image_suffix, prepare_output_dir, write_image
from src_training.engine.registration import (
    check_pair,
    load_registration_model,
    register_pair,
    register_stack,
    run_to_end,
    series_reference,
)
from src_training.networks.modelio import ModelFile
from src_training.registration.inference import check_model_fits, check_registration_memory
from src_training.runtime.devices import resolve_device
from src_training.runtime.precision import resolve_precision


def register(args: argparse.Namespace) -> None:
    """``deepsim register``: warp a moving image (or a whole stack) with a trained model."""
    model = load_registration_model(args.model)
    device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, device)
    if args.series:
        if args.images:
            raise ValueError("give either FIXED MOVING or --series STACK, not both")
        _register_series(model, args, device)
        return
    if len(args.images) != 2:
        raise ValueError("register needs two images, FIXED and MOVING (or --series STACK)")
    fixed_path, moving_path = args.images
    fixed, _ = load_image_file(fixed_path, normalise=False)
    moving, _ = load_image_file(moving_path, normalise=False)
    names = (f"the fixed image {fixed_path}", f"the moving image {moving_path}")
    check_pair(model, fixed, moving, names)
    labels = [_moving_labels(p, moving.shape[1:], fixed.shape[1:]) for p in args.labels]
    fixed_labels = None
    if args.fixed_labels:
        fixed_labels = load_label_file(args.fixed_labels)
        if fixed_labels.shape != fixed.shape[1:]:
            raise ValueError(
                f"--fixed-labels {args.fixed_labels} has shape {fixed_labels.shape} but the "
                f"fixed image {fixed.shape[1:]}; pass the fixed image's labels"
            )
    ndim = model.ndim
    suffix = image_suffix(ndim)
    label_names = [f"warped_{Path(p).name.split('.')[0]}{suffix}" for p in args.labels]
    files = [f"warped{suffix}", "displacement.npy", f"displacement{suffix}", f"jacobian{suffix}"]
    check_registration_memory(model.network, fixed.shape[1:], 1, device)
    out = prepare_output_dir(args.out, files + label_names, args.overwrite)
    if tuple(moving.shape[1:]) != tuple(fixed.shape[1:]):
        print(
            f"resampling the moving image from {tuple(moving.shape[1:])} to the fixed grid "
            f"{tuple(fixed.shape[1:])}"
        )
    result = run_to_end(
        register_pair(
            model,
            fixed,
            moving,
            device=device,
            moving_labels=labels,
            fixed_labels=fixed_labels,
            names=names,
            precision=args.precision,
        )
    )
    warped = result.warped
    write_image(out / files[0], warped[0] if warped.shape[0] == 1 else warped, ndim)
    np.save(out / files[1], result.field)
    write_image(out / files[2], result.field, ndim)
    write_image(out / files[3], result.jacobian, ndim)
    print(
        f"registered {moving_path} onto {fixed_path} in {result.seconds:.2f} s: "
        f"folding {result.folding_percent:.3f} %, std log|J| {result.sdlogj:.3f}"
    )
    for k, (path, name) in enumerate(zip(args.labels, label_names, strict=True)):
        write_image(out / name, result.warped_labels[k], ndim)
        if fixed_labels is not None:
            before, after = result.dice[k]
            print(
                f"Dice ({Path(path).name} vs {Path(args.fixed_labels).name}): "
                f"{before:.4f} before -> {after:.4f} after"
            )
    print(f"wrote {', '.join(files + label_names)} to {out}")


def _moving_labels(path: str, moving_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Read moving labels, which must be on the moving (or already the fixed) grid."""
    labels = load_label_file(path)
    if labels.shape in (tuple(shape), tuple(moving_shape)):
        return labels
    raise ValueError(
        f"the labels {path} have shape {labels.shape}, but the moving image has "
        f"{tuple(moving_shape)}; pass the moving image's labels"
    )


def _reference(text: str) -> int | str:
    if text == "previous":
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--reference must be a frame index or 'previous', got {text!r}") from None


def _register_series(model: ModelFile, args: argparse.Namespace, device: object) -> None:
    stack = load_dataset(args.series, labels="none", ndim=args.ndim)
    check_model_fits(model, stack.images[0], f"the frames of {args.series}")
    reference = _reference(args.reference)
    frames = stack.images
    series_reference(len(frames), reference)
    labels = None
    if args.labels:
        if len(args.labels) != 1:
            raise ValueError("with --series, --labels takes one label stack of the same frames")
        labels = load_label_file(args.labels[0])
        if labels.shape != (len(frames), *frames.shape[2:]):
            raise ValueError(
                f"the label stack {args.labels[0]} has shape {labels.shape} but the series "
                f"{(len(frames), *frames.shape[2:])}; pass the labels of the same frames"
            )
    ndim = model.ndim
    suffix = image_suffix(ndim)
    files = [f"warped{suffix}", "displacements.npy", f"jacobians{suffix}"]
    if labels is not None:
        files.append(f"warped_labels{suffix}")
    check_registration_memory(model.network, frames.shape[2:], len(frames), device, args.batch_size)
    out = prepare_output_dir(args.out, files, args.overwrite)
    result = run_to_end(
        register_stack(
            model,
            frames,
            reference,
            device=device,
            batch_size=args.batch_size,
            labels=labels,
            what=args.series,
            precision=args.precision,
        )
    )
    warped = result.warped
    write_image(out / files[0], warped[:, 0] if warped.shape[1] == 1 else warped, ndim)
    np.save(out / files[1], result.fields)
    write_image(out / files[2], result.jacobians, ndim)
    if result.warped_labels is not None:
        write_image(out / files[3], result.warped_labels, ndim)
    n = len(frames)
    print(
        f"registered {n} frames of {args.series} to {reference} in {result.seconds:.2f} s "
        f"({n / result.seconds:.1f} frames/s); folding {result.folding_percent:.3f} % "
        "(every frame but the reference)"
    )
    if result.dice is not None:
        print(
            f"Dice (every frame vs reference frame {result.reference}): "
            f"{result.dice[0]:.4f} before -> {result.dice[1]:.4f} after"
        )
    print(f"wrote {', '.join(files)} to {out}")
