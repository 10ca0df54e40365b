"""``deepsim register``: a pair or a whole series through the engine, results written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from src_training.cli.common import optimisation, optimisation_flags_used
from src_training.cli.register_store import read_series, register_store, writes_store
from src_training.data.datasets import load_dataset, load_image_file, load_label_file
from src_training.data.lazy import is_zarr
from src_training.data.orientation import (
    axis_codes,
    orientation_change,
    reorient_array,
    reorient_points,
    reorient_spacing,
)
from src_training.data.placement import positions_on_grid
from src_training.data.points import PointsTable, read_points_csv, write_points_csv
from src_training.data.reading import file_stem
from src_training.data.writing import image_suffix, prepare_output_dir, write_image
from src_training.engine.fields import export_itk, file_grid, move_world_points
from src_training.engine.registration import (
    PairRegistration,
    check_pair,
    load_registration_model,
    register_pair,
    run_to_end,
)
from src_training.engine.series import SeriesRegistration, register_stack, series_reference
from src_training.networks.modelio import ModelFile
from src_training.registration.inference import check_model_fits, check_registration_memory
from src_training.runtime.devices import resolve_device
from src_training.runtime.precision import resolve_precision
from src_training.spatial.fieldio import FieldFile, provenance, save_field


def register(args: argparse.Namespace) -> None:
    """``deepsim register``: warp a moving image (or a stack) with a model, by optimisation."""
    if not args.model and not args.optimise:
        raise ValueError("register needs --model R.pt, --optimise, or both (to refine the model)")
    used = optimisation_flags_used(args) + [
        flag
        for key, flag in (("metric", "--metric"), ("features", "--features"))
        if getattr(args, key)
    ]
    if used and not args.optimise:
        raise ValueError(
            f"{used[0]} applies to --optimise; pass --optimise too, or remove {used[0]}"
        )
    model = load_registration_model(args.model) if args.model else None
    device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, device)
    store = writes_store(args)
    if args.series:
        if args.images:
            raise ValueError("give either FIXED MOVING or --series STACK, not both")
        pair_only = [
            flag
            for flag, used in (("--points", args.points), ("--itk-field", args.itk_field))
            if used
        ]
        if pair_only:
            raise ValueError(
                f"{pair_only[0]} applies to a pair; register FIXED MOVING instead of --series"
            )
        if store:
            register_store(model, args, device, _reference(args.reference))
        else:
            _register_series(model, args, device)
        return
    if len(args.images) != 2:
        raise ValueError("register needs two images, FIXED and MOVING (or --series STACK)")
    fixed_path, moving_path = args.images
    fixed, spacing = load_image_file(fixed_path, normalise=False)
    moving, moving_spacing, change = _read_moving(moving_path, fixed_path)
    names = (f"the fixed image {fixed_path}", f"the moving image {moving_path}")
    check_pair(model, fixed, moving, names)
    shape = tuple(fixed.shape[1:])
    optimised = None
    if args.optimise:
        spec = args.metric or "ncc"
        optimised = optimisation(
            args, spec, len(shape), fixed.shape[0], shape, refine=model is not None
        )
    labels = [_moving_labels(p, moving.shape[1:], shape, fixed_path) for p in args.labels]
    fixed_labels = None
    if args.fixed_labels:
        fixed_labels = load_label_file(args.fixed_labels)
        if fixed_labels.shape != fixed.shape[1:]:
            raise ValueError(
                f"--fixed-labels {args.fixed_labels} has shape {fixed_labels.shape} but the "
                f"fixed image {fixed.shape[1:]}; pass the fixed image's labels"
            )
    ndim = len(shape)
    suffix = image_suffix(ndim)
    label_names = [f"warped_{Path(p).name.split('.')[0]}{suffix}" for p in args.labels]
    files = [f"warped{suffix}", "displacement.npz", f"displacement{suffix}", f"jacobian{suffix}"]
    points = {f"moved_{file_stem(p)}.csv": read_points_csv(p, ndim) for p in args.points}
    read_shape = () if change is None else tuple(moving.shape[1:][int(a)] for a in change[:, 0])
    files += list(points)
    if args.itk_field:
        files.append(f"displacement_itk.{args.itk_field}")
    if model is not None:
        check_registration_memory(model.network, fixed.shape[1:], 1, device)
    out = prepare_output_dir(args.out, files + label_names, args.overwrite)
    physical = spacing is not None and moving_spacing is not None
    if tuple(moving.shape[1:]) != shape or (physical and spacing != moving_spacing):
        how = (
            "by voxel size, centres aligned"
            if physical
            else "corner onto corner (a file gives no voxel size)"
        )
        print(f"placing the moving image {tuple(moving.shape[1:])} on the fixed grid {shape} {how}")
    result = run_to_end(
        register_pair(
            model,
            fixed,
            moving,
            device=device,
            moving_labels=labels,
            fixed_labels=fixed_labels,
            names=names,
            optimisation=optimised,
            precision=args.precision,
            spacings=(spacing, moving_spacing),
        )
    )
    _warn(result.warnings)
    warped = result.warped
    write_image(out / files[0], warped[0] if warped.shape[0] == 1 else warped, ndim)
    field_file = FieldFile(
        result.field,
        **file_grid(fixed_path, ndim, spacing),
        provenance=provenance(_method(args, result), fixed_path, moving_path),
    )
    save_field(out / files[1], field_file)
    if args.itk_field:
        export_itk(field_file, out / files[-1])
    for name, table in points.items():
        as_read = reorient_points(table.coordinates, read_shape, change)
        on_grid = positions_on_grid(as_read, moving.shape[1:], shape, moving_spacing, spacing)
        _move_points(out / name, table, on_grid, field_file)
    write_image(out / files[2], result.field, ndim)
    write_image(out / files[3], result.jacobian, ndim)
    how = _how(model, result)
    print(
        f"registered {moving_path} onto {fixed_path} {how}in {result.seconds:.2f} s: "
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


def _method(args: argparse.Namespace, result: PairRegistration | SeriesRegistration) -> str:
    """Name what made a field: the model, its optimisation, or both."""
    method = [str(args.model)] if args.model else []
    if result.optimisation is not None:
        method.append(f"optimisation ({result.optimisation.metric})")
    return " refined by ".join(method)


def _move_points(path: Path, table: PointsTable, voxels: np.ndarray, field_file: FieldFile) -> None:
    """Move a table's positions (in fixed-grid voxels) through the field and write it."""
    world = voxels * field_file.spacing + field_file.origin
    moved, residual = move_world_points(field_file, world)
    moved = (moved - field_file.origin) / field_file.spacing
    write_points_csv(path, table, moved)
    if len(residual) and residual.max() > 0.1:
        _warn(
            [
                f"{int((residual > 0.1).sum())} point(s) of {path.name} could not be moved "
                f"exactly (up to {residual.max():.2f} voxels off): the field folds there"
            ]
        )


def _warn(warnings: list[str]) -> None:
    """Print each warning about the data as one line on stderr."""
    for line in warnings:
        print(f"deepsim: warning: {line}", file=sys.stderr)


def _how(model: ModelFile | None, result: PairRegistration | SeriesRegistration) -> str:
    """Say what registered: the model, and the optimisation with its losses."""
    run = result.optimisation
    if run is None:
        return ""
    start = "refining the model, " if model is not None else ""
    return (
        f"({start}{run.iterations} iterations of {run.metric}, loss "
        f"{run.initial_loss:.4f} -> {run.loss:.4f}) "
    )


def _read_moving(
    moving_path: str, fixed_path: str
) -> tuple[np.ndarray, tuple[float, ...] | None, np.ndarray | None]:
    """Read the moving image in the fixed file's voxel order.

    A NIfTI volume stored in another voxel order is flipped and permuted as the two
    affines say; returns the image, its voxel size and the change made (None if none).
    """
    moving, spacing = load_image_file(moving_path, normalise=False)
    change = orientation_change(moving_path, fixed_path)
    if change is not None:
        print(
            f"reading the moving volume (voxel axes {axis_codes(moving_path)}) in the fixed "
            f"volume's voxel order ({axis_codes(fixed_path)})"
        )
    return reorient_array(moving[0], change)[None], reorient_spacing(spacing, change), change


def _moving_labels(
    path: str, moving_shape: tuple[int, ...], shape: tuple[int, ...], fixed_path: str
) -> np.ndarray:
    """Read moving labels (on the moving or already the fixed grid) in the fixed's order."""
    labels = reorient_array(load_label_file(path), orientation_change(path, fixed_path))
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


def _register_series(model: ModelFile | None, args: argparse.Namespace, device: object) -> None:
    if is_zarr(args.series):
        source = read_series(args.series, args.ndim)
        frames = np.stack([source[t] for t in range(len(source))])
    else:
        frames = load_dataset(args.series, labels="none", ndim=args.ndim).images
    if model is not None:
        check_model_fits(model, frames[0], f"the frames of {args.series}")
    reference = _reference(args.reference)
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
    ndim = frames.ndim - 2
    optimised = None
    if args.optimise:
        spec = args.metric or "ncc"
        spatial = tuple(frames.shape[2:])
        optimised = optimisation(args, spec, ndim, frames.shape[1], spatial, model is not None)
    suffix = image_suffix(ndim)
    files = [f"warped{suffix}", "displacements.npz", f"jacobians{suffix}"]
    if labels is not None:
        files.append(f"warped_labels{suffix}")
    if model is not None:
        check_registration_memory(
            model.network, frames.shape[2:], len(frames), device, args.batch_size
        )
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
            optimisation=optimised,
            precision=args.precision,
        )
    )
    _warn(result.warnings)
    warped = result.warped
    write_image(out / files[0], warped[:, 0] if warped.shape[1] == 1 else warped, ndim)
    made = provenance(_method(args, result), args.series, args.series, reference=str(reference))
    save_field(out / files[1], FieldFile(result.fields, provenance=made, stack=True))
    write_image(out / files[2], result.jacobians, ndim)
    if result.warped_labels is not None:
        write_image(out / files[3], result.warped_labels, ndim)
    n = len(frames)
    print(
        f"registered {n} frames of {args.series} to {reference} {_how(model, result)}"
        f"in {result.seconds:.2f} s "
        f"({n / result.seconds:.1f} frames/s); folding {result.folding_percent:.3f} % "
        "(every frame but the reference)"
    )
    if result.dice is not None:
        print(
            f"Dice (every frame vs reference frame {result.reference}): "
            f"{result.dice[0]:.4f} before -> {result.dice[1]:.4f} after"
        )
    print(f"wrote {', '.join(files)} to {out}")
