"""``deepsim train-features`` and ``deepsim train``: the engine's trainers with a progress bar."""

from __future__ import annotations

import argparse
from pathlib import Path

from src_training.cli.common import dataset, non_negative
from src_training.cli.progress import ProgressPrinter
from src_training.data.augment import NO_AUGMENTATION, AugmentConfig
from src_training.data.datasets import Dataset
from src_training.data.pairs import read_pairs_csv
from src_training.data.writing import check_writable
from src_training.engine.metrics import registration_metric
from src_training.engine.options import parse_channels
from src_training.engine.training import (
    SELF_SUPERVISED_NOISE,
    features_trainer,
    registration_trainer,
)
from src_training.metrics.registry import metric_spec
from src_training.runtime.devices import resolve_device
from src_training.training.distributed import init_distributed, shutdown_distributed
from src_training.training.trainer import TrainConfig, Trainer, last_checkpoint_path, log_path


def _datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset | None]:
    train = dataset(args, args.frames)
    val = dataset(args, args.val_frames) if args.val_frames else None
    return train, val


def _noise(args: argparse.Namespace) -> float:
    if args.noise is not None:
        return non_negative(args.noise, "--noise")
    return SELF_SUPERVISED_NOISE if getattr(args, "self_supervised", False) else 0.0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    noise = _noise(args)
    augment = NO_AUGMENTATION if args.no_augment else AugmentConfig()
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        crop=args.crop,
        seed=args.seed,
        max_offset=getattr(args, "max_offset", 2),
        augment=AugmentConfig(**{**augment.__dict__, "noise": noise}),
        val_every=args.val_every,
        checkpoint_every=args.checkpoint_every,
        precision=args.precision,
        compile=args.compile,
        log_every=args.log_every,
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


def _channels(args: argparse.Namespace) -> tuple[int, ...] | None:
    return parse_channels(args.channels, "--channels") if args.channels else None


def _levels(text: str) -> list[int]:
    try:
        return [int(level) for level in text.split(",")]
    except ValueError:
        raise ValueError(f"--feature-levels must be stage numbers like 1,2; got {text!r}") from None


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
    non_negative(args.dice_weight, "--dice-weight")
    if args.self_supervised:
        args.labels = "none"  # it reads no labels, and its file's train_data says so
    train, val = _datasets(args)
    context, device = init_distributed(resolve_device(args.device))
    trainer = features_trainer(
        train,
        val,
        config,
        kind=args.kind,
        channels=_channels(args),
        init=args.init,
        what=args.data,
        dice_weight=args.dice_weight,
        self_supervised=args.self_supervised,
        checkpointing=args.checkpointing,
        out=out,
        device=device,
        rank=context.rank,
        world_size=context.world_size,
    )
    _run(trainer, args, out)


def train_registration(args: argparse.Namespace) -> None:
    """``deepsim train``: train a registration model with a similarity metric."""
    metric_spec(args.metric)
    out = _check_out(args)
    config = _train_config(args)
    train, val = _datasets(args)
    metric = registration_metric(
        args.metric,
        ndim=train.ndim,
        channels=train.channels,
        features=args.features,
        vgg_weights=args.vgg_weights,
        feature_levels=_levels(args.feature_levels) if args.feature_levels else None,
    )
    if args.pairs:
        train = Dataset(**{**train.__dict__, "pairs": read_pairs_csv(args.pairs, train.names)})
    context, device = init_distributed(resolve_device(args.device))
    trainer = registration_trainer(
        train,
        val,
        metric,
        config,
        lam=args.lam,
        regulariser=args.regulariser,
        channels=_channels(args),
        diffeomorphic=args.diffeomorphic,
        init=args.init,
        checkpointing=args.checkpointing,
        out=out,
        device=device,
        rank=context.rank,
        world_size=context.world_size,
    )
    _run(trainer, args, out)
