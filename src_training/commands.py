"""What the ``deepsim`` sub-commands do, on top of the core's public functions."""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src_training.augment import NO_AUGMENTATION, AugmentConfig
from src_training.baselines import ElastixBSpline, elastix_version
from src_training.datasets import (
    Dataset,
    load_dataset,
    load_image_file,
    load_label_file,
    parse_frames,
    resample,
)
from src_training.devices import resolve_device
from src_training.distributed import init_distributed, shutdown_distributed
from src_training.evaluation import (
    Method,
    Registered,
    add_noise,
    field_regularity,
    identity_method,
    mean_dice,
    network_method,
    score_pairs,
    summarise,
)
from src_training.figures import (
    Panel,
    convergence_figure,
    dice_boxes,
    dice_boxplot,
    field_2d,
    jacobian_figure,
    parse_zoom,
    qualitative_figure,
    read_validation_curve,
    require_matplotlib,
    view_2d,
)
from src_training.metrics import METRICS, get_metric, metric_spec
from src_training.modelio import ModelFile, load_model, require_kind
from src_training.networks import FeatureExtractor, RegistrationNet
from src_training.pairs import atlas_pairs, consecutive_pairs, read_pairs_csv
from src_training.progress import ProgressPrinter
from src_training.registration import (
    check_model_fits,
    check_registration_memory,
    check_series,
    jacobian_array,
    predict,
    register_series,
    warp_array,
    warp_label_array,
)
from src_training.stats import against_reference
from src_training.training import (
    FeatureTrainer,
    RegistrationTrainer,
    TrainConfig,
    Trainer,
    last_checkpoint_path,
    log_path,
)
from src_training.writers import check_writable, image_suffix, prepare_output_dir, write_image


def metrics(args: argparse.Namespace) -> None:
    """``deepsim metrics``: list the registered metrics, their default lambda and needs."""
    width = max(len(name) for name in METRICS)
    print(f"{'name':<{width}}  {'lambda':>6}  needs       description")
    for spec in METRICS.values():
        flags = (
            ("labels", spec.needs_labels),
            ("features", spec.needs_extractor),
            ("weights", spec.needs_weights),
        )
        needs = ",".join(word for word, flag in flags if flag) or "-"
        print(f"{spec.name:<{width}}  {spec.default_lambda:>6g}  {needs:<10}  {spec.description}")


def demo(args: argparse.Namespace) -> None:
    """``deepsim demo``: the main job on the built-in noisy cell sample."""
    from src_training.demo import run_demo

    run_demo(steps=args.steps, metric=args.metric, device=args.device, seed=args.seed)


def _channels(text: str) -> list[int]:
    try:
        channels = [int(c) for c in text.split(",")]
    except ValueError:
        channels = []
    if not channels or min(channels) < 1:
        raise ValueError(f"--channels must be positive integers like 64,128,256; got {text!r}")
    return channels


def _levels(text: str) -> list[int]:
    try:
        return [int(level) for level in text.split(",")]
    except ValueError:
        raise ValueError(f"--feature-levels must be stage numbers like 1,2; got {text!r}") from None


def _datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset | None]:
    options = {"labels": args.labels, "ndim": args.ndim, "label_file": args.label_file}
    frames = parse_frames(args.frames) if args.frames else None
    train = _with_atlas(load_dataset(args.data, frames=frames, **options), args)
    val = None
    if args.val_frames:
        val = load_dataset(args.data, frames=parse_frames(args.val_frames), **options)
        val = _with_atlas(val, args)
    return train, val


def _with_atlas(data: Dataset, args: argparse.Namespace) -> Dataset:
    """Append ``--atlas`` (resampled onto the data grid) and pair every image with it."""
    if not getattr(args, "atlas", None):
        if getattr(args, "atlas_labels", None):
            raise ValueError("--atlas-labels needs --atlas")
        return data
    atlas, _ = load_image_file(args.atlas)
    shape = data.images.shape[2:]
    if atlas.ndim - 1 != data.ndim:
        raise ValueError(
            f"the atlas {args.atlas} is {atlas.ndim - 1}D but the data is {data.ndim}D"
        )
    atlas = np.stack([resample(c, shape, order=1) for c in atlas])[None]
    labels = None
    if data.labels is not None:
        if not args.atlas_labels:
            raise ValueError(
                f"{args.data} has labels but the atlas has none: pass --atlas-labels FILE, "
                "or --labels none"
            )
        raw = resample(load_label_file(args.atlas_labels), shape, order=0)
        unknown = sorted(set(np.unique(raw).tolist()) - set(data.class_values))
        if unknown:
            raise ValueError(
                f"the atlas labels {args.atlas_labels} hold values {unknown[:5]} that the data's "
                f"labels never use; relabel the atlas with the data's values {data.class_values}"
            )
        ids = np.searchsorted(np.array(data.class_values), raw)
        labels = np.concatenate([data.labels, ids[None].astype(data.labels.dtype)])
    n = len(data)
    return Dataset(
        images=np.concatenate([data.images, atlas.astype(np.float32)]),
        labels=labels,
        names=[*data.names, "atlas"],
        class_values=data.class_values,
        pairs=atlas_pairs(n + 1, n),
        source=f"{data.source}; every image to the atlas {args.atlas}",
        spacing=data.spacing,
    )


def _non_negative(value: float, option: str) -> float:
    if not 0 <= value < float("inf"):
        raise ValueError(f"{option} must be a finite number >= 0, got {value}")
    return value


def _train_config(args: argparse.Namespace) -> TrainConfig:
    _non_negative(args.noise, "--noise")
    augment = NO_AUGMENTATION if args.no_augment else AugmentConfig()
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        crop=args.crop,
        seed=args.seed,
        max_offset=getattr(args, "max_offset", 2),
        augment=AugmentConfig(**{**augment.__dict__, "noise": args.noise}),
        val_every=args.val_every,
        checkpoint_every=args.checkpoint_every,
    )


def _check_out(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.suffix != ".pt":
        raise ValueError(f"--out must name a .pt file, got {out}")
    if args.resume:
        if not last_checkpoint_path(out).is_file():
            raise FileNotFoundError(
                f"cannot resume: {last_checkpoint_path(out)} does not exist; run without --resume"
            )
    elif not args.overwrite:
        for path in (out, last_checkpoint_path(out), log_path(out)):
            if path.exists():
                raise ValueError(
                    f"{path} already exists; choose another --out, pass --overwrite, or --resume"
                )
    if not out.parent.is_dir():
        raise FileNotFoundError(
            f"the folder of --out ({out.parent}) does not exist; create it or choose another --out"
        )
    check_writable(out.parent)
    return out


def _run(trainer: Trainer, args: argparse.Namespace, out: Path) -> None:
    if args.resume:
        trainer.resume()
    show = ProgressPrinter() if trainer.is_main else None
    events = trainer.run()
    try:
        for event in events:
            if show is not None:
                show(event)
    except KeyboardInterrupt:
        events.close()  # runs the trainer's final save even if Ctrl-C hit the printing
        if trainer.is_main:
            print(
                f"\nstopped at step {trainer.step}; saved {last_checkpoint_path(out)} "
                "(continue with --resume)"
            )
        shutdown_distributed(wait_for_all=False)
        raise
    except BaseException:
        shutdown_distributed(wait_for_all=False)
        raise
    shutdown_distributed()
    if trainer.is_main:
        print(f"saved {out} (step {trainer.step}); curves in {out.with_suffix('.csv')}")


def train_features(args: argparse.Namespace) -> None:
    """``deepsim train-features``: train the feature extractor DeepSim compares."""
    out = _check_out(args)
    config = _train_config(args)
    _non_negative(args.dice_weight, "--dice-weight")
    train, val = _datasets(args)
    if args.kind == "segmentation" and (train.labels is None or train.num_classes < 2):
        raise ValueError(
            f"{args.data} has no label images with at least 2 classes; a segmentation extractor "
            "needs labels (or use --kind autoencoder)"
        )
    context, device = init_distributed(resolve_device(args.device))
    torch.manual_seed(args.seed)
    network = FeatureExtractor(
        train.ndim,
        train.channels,
        max(train.num_classes, 2),
        _channels(args.channels),
        kind=args.kind,
        dice_weight=args.dice_weight,
    )
    trainer = FeatureTrainer(
        network,
        config,
        train,
        val,
        out,
        {"task": "features"},
        device,
        context.rank,
        context.world_size,
    )
    _run(trainer, args, out)


def _load_extractor(path: str, metric: str, train: Dataset) -> FeatureExtractor:
    model = load_model(path)
    require_kind(model, "features", path)
    network = model.network
    assert isinstance(network, FeatureExtractor)
    if network.ndim != train.ndim or network.in_channels != train.channels:
        raise ValueError(
            f"the feature extractor {path} is {network.ndim}D with {network.in_channels} "
            f"channel(s) but the data is {train.ndim}D with {train.channels}; train features "
            "on this data"
        )
    wanted = "autoencoder" if metric == "deepsim-ae" else "segmentation"
    if network.kind != wanted:
        raise ValueError(
            f"{metric} needs a {wanted} feature extractor but {path} is an {network.kind}; "
            f"use --metric {'deepsim-ae' if network.kind == 'autoencoder' else 'deepsim'}"
        )
    return network


def train_registration(args: argparse.Namespace) -> None:
    """``deepsim train``: train a registration model with a similarity metric."""
    spec = metric_spec(args.metric)
    out = _check_out(args)
    config = _train_config(args)
    train, val = _datasets(args)
    lam = spec.default_lambda if args.lam is None else args.lam
    options: dict[str, Any] = {}
    metadata: dict[str, Any] = {"task": "registration"}
    if spec.needs_extractor:
        if not args.features:
            raise ValueError(
                f"the {args.metric} metric needs a trained feature extractor: train one with "
                "`deepsim train-features` and pass --features F.pt"
            )
        options["extractor"] = _load_extractor(args.features, args.metric, train)
        metadata["features"] = str(Path(args.features).resolve())
        if args.feature_levels:
            options["levels"] = _levels(args.feature_levels)
    elif args.feature_levels:
        raise ValueError(
            f"--feature-levels applies to deepsim and deepsim-ae, not {args.metric}; "
            "use it with --metric deepsim or remove it"
        )
    if spec.needs_weights:
        options["weights"] = args.vgg_weights
    if args.pairs:
        train = Dataset(**{**train.__dict__, "pairs": read_pairs_csv(args.pairs, train.names)})
    metric = get_metric(args.metric, **options)
    if "levels" in options:
        metadata["feature_levels"] = metric.levels
    context, device = init_distributed(resolve_device(args.device))
    torch.manual_seed(args.seed)
    network = RegistrationNet(
        train.ndim, train.channels, _channels(args.channels), diffeomorphic=args.diffeomorphic
    )
    trainer = RegistrationTrainer(
        network,
        config,
        train,
        metric=metric,
        metric_name=args.metric,
        lam=lam,
        regulariser=args.regulariser,
        val=val,
        out=out,
        metadata=metadata,
        device=device,
        rank=context.rank,
        world_size=context.world_size,
    )
    _run(trainer, args, out)


def _registration_model(path: str) -> ModelFile:
    model = load_model(path)
    require_kind(model, "registration", path)
    return model


def register(args: argparse.Namespace) -> None:
    """``deepsim register``: warp a moving image (or a whole stack) with a trained model."""
    model = _registration_model(args.model)
    device = resolve_device(args.device)
    if args.series:
        if args.images:
            raise ValueError("give either FIXED MOVING or --series STACK, not both")
        _register_series(model, args, device)
        return
    if len(args.images) != 2:
        raise ValueError("register needs two images, FIXED and MOVING (or --series STACK)")
    fixed_path, moving_path = args.images
    fixed, _ = load_image_file(fixed_path)
    moving, _ = load_image_file(moving_path)
    raw_moving, _ = load_image_file(moving_path, normalise=False)
    if fixed.ndim != moving.ndim:
        raise ValueError(
            f"the fixed image {fixed_path} is {fixed.ndim - 1}D but the moving image "
            f"{moving_path} is {moving.ndim - 1}D; register two images of the same kind"
        )
    check_model_fits(model, fixed, f"the fixed image {fixed_path}")
    check_model_fits(model, moving, f"the moving image {moving_path}")
    ndim = model.ndim
    shape = tuple(fixed.shape[1:])
    moving_shape = tuple(moving.shape[1:])
    if moving_shape != shape:
        print(f"resampling the moving image from {moving_shape} to the fixed grid {shape}")
        moving = np.stack([resample(c, shape, order=1) for c in moving])
        raw_moving = np.stack([resample(c, shape, order=1) for c in raw_moving])
    moving_labels = [_labels_on_grid(p, moving_shape, shape) for p in args.labels]
    fixed_labels = None
    if args.fixed_labels:
        fixed_labels = load_label_file(args.fixed_labels)
        if fixed_labels.shape != shape:
            raise ValueError(
                f"--fixed-labels {args.fixed_labels} has shape {fixed_labels.shape} but the "
                f"fixed image {shape}; pass the fixed image's labels"
            )
    suffix = image_suffix(ndim)
    label_names = [f"warped_{Path(p).name.split('.')[0]}{suffix}" for p in args.labels]
    names = [f"warped{suffix}", "displacement.npy", f"displacement{suffix}", f"jacobian{suffix}"]
    check_registration_memory(model.network, shape, 1, device)
    out = prepare_output_dir(args.out, names + label_names, args.overwrite)
    start = time.perf_counter()
    disp = predict(model.network, moving[None], fixed[None], device)
    seconds = time.perf_counter() - start
    warped = warp_array(raw_moving, disp)
    write_image(out / names[0], warped[0] if warped.shape[0] == 1 else warped, ndim)
    np.save(out / names[1], disp[0].numpy())
    write_image(out / names[2], disp[0].numpy(), ndim)
    write_image(out / names[3], jacobian_array(disp), ndim)
    stats = field_regularity(disp)
    print(
        f"registered {moving_path} onto {fixed_path} in {seconds:.2f} s: "
        f"folding {stats['folding_percent']:.3f} %, std log|J| {stats['sdlogj']:.3f}"
    )
    for path, labels, name in zip(args.labels, moving_labels, label_names, strict=True):
        warped_labels = warp_label_array(labels, disp)
        write_image(out / name, warped_labels, ndim)
        if fixed_labels is not None:
            print(
                f"Dice ({Path(path).name} vs {Path(args.fixed_labels).name}): "
                f"{mean_dice(labels, fixed_labels):.4f} before -> "
                f"{mean_dice(warped_labels, fixed_labels):.4f} after"
            )
    print(f"wrote {', '.join(names + label_names)} to {out}")


def _labels_on_grid(path: str, moving_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Read moving labels and bring them onto the fixed grid like the moving image."""
    labels = load_label_file(path)
    if labels.shape == shape:
        return labels
    if labels.shape == moving_shape:
        return resample(labels, shape, order=0)
    raise ValueError(
        f"the labels {path} have shape {labels.shape}, but the moving image has {moving_shape}; "
        "pass the moving image's labels"
    )


def _register_series(model: ModelFile, args: argparse.Namespace, device: torch.device) -> None:
    stack = load_dataset(args.series, labels="none", ndim=args.ndim)
    check_model_fits(model, stack.images[0], f"the frames of {args.series}")
    reference: int | str = args.reference
    if reference != "previous":
        try:
            reference = int(reference)
        except ValueError:
            raise ValueError(
                f"--reference must be a frame index or 'previous', got {args.reference!r}"
            ) from None
    ndim = model.ndim
    suffix = image_suffix(ndim)
    names = [f"warped{suffix}", "displacements.npy", f"jacobians{suffix}"]
    frames = stack.images
    check_series(len(frames), reference)
    check_registration_memory(model.network, frames.shape[2:], len(frames), device, args.batch_size)
    out = prepare_output_dir(args.out, names, args.overwrite)
    start = time.perf_counter()
    result = register_series(model.network, frames, reference, device, args.batch_size)
    seconds = time.perf_counter() - start
    warped = result.warped.numpy()
    write_image(out / names[0], warped[:, 0] if warped.shape[1] == 1 else warped, ndim)
    np.save(out / names[1], result.displacements.numpy())
    jac = np.stack([jacobian_array(d[None]) for d in result.displacements])
    write_image(out / names[2], jac, ndim)
    folding = float((jac <= 0).mean() * 100)
    n = len(stack)
    print(
        f"registered {n} frames of {args.series} to {reference} in {seconds:.2f} s "
        f"({n / seconds:.1f} frames/s); folding {folding:.3f} %"
    )
    print(f"wrote {', '.join(names)} to {out}")


FIGURES = ("dice_boxplot.png", "qualitative.png", "jacobian.png")


def evaluate(args: argparse.Namespace) -> None:
    """``deepsim evaluate``: scores per pair and model, statistics, CSV tables, figures."""
    if not args.models and not args.baseline:
        raise ValueError("nothing to evaluate: pass --models R.pt ... and/or --baseline identity")
    _non_negative(args.noise, "--noise")
    if args.zoom and not args.figures:
        raise ValueError("--zoom marks a region of the figures; pass --figures too")
    if args.figures:
        require_matplotlib()
    frames = parse_frames(args.frames) if args.frames else None
    data = load_dataset(
        args.data, frames=frames, labels=args.labels, ndim=args.ndim, label_file=args.label_file
    )
    data = _with_atlas(data, args)
    if data.labels is None:
        raise ValueError(f"{args.data} has no label images; evaluation needs labels for Dice")
    if args.pairs:
        pairs = read_pairs_csv(args.pairs, data.names)
    else:
        pairs = data.pairs if data.pairs is not None else consecutive_pairs(len(data))
    if not pairs:
        raise ValueError("the selected data holds no pair; select at least 2 frames")
    device = resolve_device(args.device)
    methods = _evaluated_methods(args, data, device)
    zoom = parse_zoom(args.zoom, view_2d(data.images[0]).shape) if args.zoom else None
    names = ["pairs.csv", "summary.csv", *(FIGURES if args.figures else ())]
    out = prepare_output_dir(args.out, names, args.overwrite)
    images = add_noise(data.images, args.noise, args.seed)
    shown = _median_identity_pair(data.labels, pairs) if args.figures else None
    pair_rows, summary_rows, kept = [], [], {}
    for name, metric, method in methods:
        scored = score_pairs(
            images, data.labels, pairs, method, data.class_values, hd95=args.hd95, keep=shown
        )
        for row in scored.rows:
            row.update(
                model=name,
                metric=metric,
                noise=args.noise,
                moving_name=data.names[int(row["moving"])],
                fixed_name=data.names[int(row["fixed"])],
            )
        pair_rows += scored.rows
        summary_rows.append(
            {"model": name, "metric": metric, "noise": args.noise, **summarise(scored.rows)}
        )
        if scored.kept is not None:
            kept[name] = scored.kept
    statistics = None
    if args.reference is not None:
        dice = {name: [r["dice"] for r in pair_rows if r["model"] == name] for name, *_ in methods}
        statistics = against_reference(dice, args.reference)
        for row in summary_rows:
            row.update(statistics.get(row["model"], {}))
    _write_csv(out / "pairs.csv", pair_rows, ["model", "metric", "moving_name", "fixed_name"])
    _write_csv(out / "summary.csv", summary_rows, ["model", "metric"])
    if shown is not None:
        _write_figures(out, images, shown, kept, pair_rows, statistics, args, zoom, data.names)
    _print_summary(summary_rows)
    written = ", ".join(str(out / n) for n in names)
    print(f"{len(pairs)} pairs{f', noise {args.noise:g}' if args.noise else ''}; wrote {written}")


def _evaluated_methods(
    args: argparse.Namespace, data: Dataset, device: torch.device
) -> list[tuple[str, str, Method]]:
    """``(row name, metric, method)`` of every baseline and model, checked before any work."""
    methods: list[tuple[str, str, Method]] = []
    for baseline in dict.fromkeys(args.baseline):
        if baseline == "identity":
            methods.append(("identity", "identity", identity_method))
        else:
            methods.append(("elastix", "bspline", ElastixBSpline()))
            print(f"elastix baseline: itk-elastix {elastix_version()}, default B-spline map")
    for path in args.models:
        model = _registration_model(path)
        check_model_fits(model, data.images[0], f"the data {args.data}")
        name = Path(path).stem
        if name in [m[0] for m in methods]:
            raise ValueError(
                f"two evaluated models are named {name} (a row's name is its file stem); "
                "give the model files different names"
            )
        metric = model.metadata.get("metric", "?")
        methods.append((name, metric, network_method(model.network, device)))
    names = [m[0] for m in methods]
    if args.reference is not None and args.reference not in names:
        raise ValueError(
            f"--reference {args.reference} is none of the evaluated models; choose one of "
            f"{', '.join(names)} (a model's name is its file stem)"
        )
    return methods


def _median_identity_pair(labels: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[int, int]:
    """Pick the pair whose unregistered Dice is the median (the lower one of an even count)."""
    ranked = sorted(pairs, key=lambda pair: mean_dice(labels[pair[0]], labels[pair[1]]))
    return ranked[(len(ranked) - 1) // 2]


def _write_figures(
    out: Path,
    images: np.ndarray,
    shown: tuple[int, int],
    kept: dict[str, Registered],
    pair_rows: list[dict[str, Any]],
    statistics: dict[str, dict[str, Any]] | None,
    args: argparse.Namespace,
    zoom: tuple[int, int, int, int] | None,
    frame_names: list[str],
) -> None:
    noise = f", noise σ={args.noise:g}" if args.noise else ""
    boxes = dice_boxes(pair_rows, args.reference, statistics)
    reference = f", stars: {args.reference} better (Wilcoxon)" if args.reference else ""
    dice_boxplot(out / FIGURES[0], boxes, f"{len(boxes[0].values)} test pairs{noise}{reference}")
    moving, fixed = shown
    panels = [
        Panel(name, view_2d(warp_array(images[moving], result.disp)), field_2d(result.disp))
        for name, result in kept.items()
    ]
    title = f"moving {frame_names[moving]} → fixed {frame_names[fixed]}{noise}"
    qualitative_figure(
        out / FIGURES[1],
        view_2d(images[fixed]),
        view_2d(images[moving]),
        panels,
        spacing=args.grid_spacing,
        zoom=zoom,
        title=title,
    )
    jacobian_figure(out / FIGURES[2], {name: r.disp for name, r in kept.items()}, title)


def _print_summary(rows: list[dict[str, Any]]) -> None:
    hd95 = "hd95" in rows[0]
    tested = any("p_value" in r for r in rows)
    header = ("model", "metric", "dice", "sd", "fold%", "sdlogj", "s/pair")
    print(
        "{:<24} {:<10} {:>7} {:>6} {:>7} {:>7} {:>7}".format(*header)
        + (f" {'hd95':>7}" if hd95 else "")
        + (f" {'p':>8} {'d':>6}" if tested else "")
    )
    for r in rows:
        line = (
            f"{r['model']:<24} {r['metric']:<10} {r['dice']:>7.4f} {r['dice_sd']:>6.4f} "
            f"{r['folding_percent']:>7.3f} {r['sdlogj']:>7.3f} {r['seconds_per_pair']:>7.3f}"
        )
        if hd95:
            line += f" {r['hd95']:>7.2f}"
        if "p_value" in r:
            line += f" {r['p_value']:>8.4f} {r['cohens_d']:>6.2f} {r['stars']}"
        print(line)


def curves(args: argparse.Namespace) -> None:
    """``deepsim curves``: validation Dice of training runs against step and wall time."""
    names = args.names or [Path(path).stem for path in args.logs]
    if len(names) != len(args.logs):
        raise ValueError(
            f"--names gives {len(names)} name(s) for {len(args.logs)} training log(s); "
            "give one name per CSV"
        )
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {out}")
    require_matplotlib()
    for path in args.logs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such file: {path}; check the path")
    runs = [read_validation_curve(path, name) for path, name in zip(args.logs, names, strict=True)]
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} already exists; choose another --out or pass --overwrite")
    if not out.parent.is_dir():
        raise FileNotFoundError(
            f"the folder of --out ({out.parent}) does not exist; create it or choose another --out"
        )
    check_writable(out.parent)
    convergence_figure(out, runs)
    print(f"plotted the validation Dice of {len(runs)} run(s); wrote {out}")


def _write_csv(path: Path, rows: list[dict[str, Any]], first: list[str]) -> None:
    fields = list(first)
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def fetch(args: argparse.Namespace) -> None:
    """``deepsim fetch``: download a public dataset into the cache and list its sequences."""
    from src_training.ctc import fetch as fetch_dataset
    from src_training.ctc import is_sequence

    folder = fetch_dataset(
        args.name, download=True, cache=args.cache, sha256=args.sha256, report=print
    )
    sequences = sorted(path for path in folder.iterdir() if is_sequence(path))
    print(f"{args.name} is in {folder}; its sequences are datasets for every command:")
    for path in sequences:
        print(f"  {path}")
    if sequences:
        print(f"e.g. deepsim train-features {sequences[0]} --labels foreground --out features.pt")


def info(args: argparse.Namespace) -> None:
    """``deepsim info``: print what a model file holds."""
    model = load_model(args.model)
    params = sum(p.numel() for p in model.network.parameters())
    print(f"{args.model}: {model.kind} model, {model.ndim}D, {params:,} parameters")
    for key, value in model.metadata.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"  {key}: {shown}")
    if model.training_state:
        print(f"  resumable checkpoint at step {model.training_state.get('step')}")
