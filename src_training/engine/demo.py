"""The main job on the built-in default: DeepSim against NCC on the noisy cell sample.

It runs the paper's two steps on the synthetic sequence: a feature extractor is
trained to segment frames 0-5, then registration models are trained on pairs of
those frames with NCC and with DeepSim, and all are evaluated on the held-out pairs
6 -> 5 and 7 -> 6 against the identity baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from src_training.data.augment import NO_AUGMENTATION
from src_training.data.datasets import Dataset
from src_training.data.normalise import normalise_intensity
from src_training.data.samples import CLASS_NAMES, noisy_cell_sequence
from src_training.engine.training import features_trainer, registration_metric, registration_trainer
from src_training.evaluation.scoring import evaluate_pairs, summarise
from src_training.metrics import metric_spec
from src_training.networks.models import RegistrationNet
from src_training.runtime.devices import resolve_device
from src_training.training.trainer import TrainConfig, Trainer

TRAIN_FRAMES = list(range(6))
TEST_PAIRS = [(6, 5), (7, 6)]  # (moving, fixed): frames 6 and 7 are never trained on
DEMO_CHANNELS = (16, 32, 64)


def sample_dataset() -> Dataset:
    """Return the built-in noisy cell sequence as a :class:`Dataset` (8 frames, 3 classes)."""
    seq = noisy_cell_sequence()
    images = np.stack([normalise_intensity(f) for f in seq.images])[:, None]
    return Dataset(
        images=images,
        labels=seq.labels.astype(np.int64),
        names=[f"frame{t}" for t in range(len(images))],
        class_values=list(range(len(CLASS_NAMES))),
        pairs=None,
        source="built-in synthetic noisy cell sequence (seed 0)",
    )


def _train(trainer: Trainer, echo: Callable[[str], None]) -> None:
    steps = trainer.config.steps
    for event in trainer.run():
        if event.step % max(1, steps // 4) == 0 and hasattr(event, "loss"):
            echo(f"    step {event.step:>4}/{steps}  loss {event.loss:.4f}  {event.seconds:5.1f} s")


def run_demo(
    steps: int = 300,
    metric: str = "ncc",
    device: str = "auto",
    seed: int = 0,
    echo: Callable[[str], None] = lambda _line: None,
) -> dict[str, dict[str, float]]:
    """Train DeepSim and a baseline metric on the sample and compare them on held-out pairs.

    Parameters
    ----------
    steps : int
        Training steps of the feature extractor and of each registration model.
    metric : str
        The baseline metric compared with DeepSim (one needing no extra files).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    seed : int
        Random seed.
    echo : callable
        Receives each line of the report (the command line prints them).

    Returns
    -------
    dict
        Summary (Dice, its sd, folding %, sdlogj, seconds per pair) per model name.
    """
    spec = metric_spec(metric)
    if spec.needs_extractor or spec.needs_weights:
        raise ValueError(
            "the demo compares DeepSim with a metric that needs no extra files, such as ncc, "
            f"mse, nmi or mind (got {metric!r})"
        )
    dev = resolve_device(device)
    data = sample_dataset()
    train = data.subset(TRAIN_FRAMES)
    config = TrainConfig(steps=steps, lr=1e-3, seed=seed, augment=NO_AUGMENTATION)
    echo(f"1/3 feature extractor: segmentation of frames 0-5 ({steps} steps, {dev})")
    features_config = TrainConfig(steps=steps, lr=1e-3, seed=seed)
    features = features_trainer(train, None, features_config, channels=DEMO_CHANNELS, device=dev)
    _train(features, echo)
    extractor = features.model_file()
    models: dict[str, RegistrationNet | None] = {"identity": None}
    for k, name in enumerate((metric, "deepsim"), start=2):
        similarity = registration_metric(name, ndim=2, channels=1, features=extractor)
        lam = similarity.spec.default_lambda
        echo(f"{k}/3 registration with {name} (lambda {lam:g}, {steps} steps)")
        trainer = registration_trainer(
            train, None, similarity, config, channels=DEMO_CHANNELS, device=dev
        )
        _train(trainer, echo)
        models[name] = trainer.network
    echo("held-out pairs 6->5 and 7->6: mean Dice (background, cytoplasm, nucleus), folding")
    results = {}
    for name, network in models.items():
        rows = evaluate_pairs(data.images, data.labels, TEST_PAIRS, network, data.class_values, dev)
        results[name] = summary = summarise(rows)
        echo(
            f"  {name:<9} Dice {summary['dice']:.3f} +- {summary['dice_sd']:.3f}  "
            f"folding {summary['folding_percent']:.2f} %  "
            f"{summary['seconds_per_pair'] * 1000:.0f} ms/pair"
        )
    return results
