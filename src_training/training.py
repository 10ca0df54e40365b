"""Training of feature extractors and registration models.

A :class:`Trainer` runs optimisation steps and reports each as an event
(:class:`StepEvent`, :class:`ValidationEvent`) that a terminal progress bar, the CSV
log and a napari widget all consume. It can be stopped between steps (``stop``
callback, or Ctrl-C), and it saves as it goes next to ``out``:

* ``out`` (e.g. ``R.pt``): the model to use, the best on the validation data when
  there is any, otherwise the latest;
* ``R.last.pt``: the latest checkpoint with the optimiser state, for ``--resume``;
* ``R.csv``: one row per step (losses) and per validation (scores).

Runs are reproducible on the CPU: every random choice derives from the seed and the
step, so a resumed run ends with the weights of an uninterrupted one, and a run
split over several processes (DistributedDataParallel) sees the same global batches.
"""

from __future__ import annotations

import csv
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from src_training.augment import AugmentConfig, augment_pair, crop_window, pair_generator
from src_training.data import NORMALISATION
from src_training.datasets import Dataset
from src_training.evaluation import mean_dice
from src_training.memory import check_training_memory
from src_training.metrics import METRICS
from src_training.modelio import load_model, save_model
from src_training.networks import FeatureExtractor, RegistrationNet, segmentation_loss
from src_training.pairs import Pair, PairSampler, consecutive_pairs
from src_training.regularisers import get_regulariser
from src_training.spatial import warp, warp_labels, warp_onehot


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it.

    Only the main thread receives signals; elsewhere (a napari worker, which stops
    through its ``stop`` callback) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@dataclass(frozen=True)
class StepEvent:
    """One optimisation step finished.

    Attributes
    ----------
    step, steps : int
        The step just finished (1-based) and the total.
    loss : float
        Training loss of the step's batch.
    terms : dict
        Named parts of the loss (e.g. ``similarity``, ``regularisation``).
    seconds : float
        Wall time since this run (or resumption) started.
    """

    step: int
    steps: int
    loss: float
    terms: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class ValidationEvent:
    """Scores on the validation data after ``step``.

    Attributes
    ----------
    step, steps : int
        Progress.
    scores : dict
        ``dice`` (when labels exist) and ``loss``.
    best : bool
        Whether this is the best validation so far (and was saved as the model).
    seconds : float
        Wall time since this run started.
    """

    step: int
    steps: int
    scores: dict[str, float]
    best: bool
    seconds: float


Event = StepEvent | ValidationEvent


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by both trainers.

    Attributes
    ----------
    steps : int
        Optimisation steps in total (a resumed run continues up to this).
    batch_size : int
        Pairs (or images) per step and process.
    lr : float
        Adam learning rate.
    crop : int or None
        Side of random training crops; None trains on whole images.
    seed : int
        Seed of every random choice.
    max_offset : int
        Registration pairs: largest frame distance (the paper's 2).
    augment : AugmentConfig
        Random affine and noise applied to each training pair/image.
    val_every : int
        Validate every this many steps (and at the end).
    checkpoint_every : int
        Save ``.last.pt`` every this many steps (and at the end or when stopped).
    """

    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    crop: int | None = None
    seed: int = 0
    max_offset: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_every: int = 100
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if self.crop is not None and self.crop < 8:
            raise ValueError(f"--crop must be at least 8 pixels, got {self.crop}")
        if self.val_every < 1 or self.checkpoint_every < 1:
            raise ValueError("validation and checkpoint intervals must be at least 1 step")

    def to_json(self) -> dict[str, Any]:
        """Return the settings as plain JSON values."""
        return asdict(self)


def last_checkpoint_path(out: str | Path) -> Path:
    """``R.pt`` -> ``R.last.pt``: the resumable checkpoint next to a model file."""
    out = Path(out)
    return out.with_name(out.stem + ".last" + out.suffix)


def log_path(out: str | Path) -> Path:
    """``R.pt`` -> ``R.csv``: the training curves next to a model file."""
    return Path(out).with_suffix(".csv")


LOG_FIELDS = ("step", "seconds", "loss", "similarity", "regularisation", "val_dice", "val_loss")


class Trainer:
    """Shared loop of both trainers: batches, steps, validation, checkpoints, events.

    Parameters
    ----------
    network : RegistrationNet or FeatureExtractor
        The network to train (moved to ``device``).
    config : TrainConfig
        Optimisation settings.
    train : Dataset
        Training data.
    val : Dataset, optional
        Validation data.
    out : str or Path, optional
        Model file to write (with ``.last.pt`` and ``.csv`` beside it); None trains
        without saving.
    metadata : dict, optional
        Facts recorded in the model file besides what the trainer adds.
    device : torch.device or str
        Where to train.
    rank, world_size : int
        Process index and count under distributed training; only rank 0 validates,
        logs and saves.
    """

    def __init__(
        self,
        network: RegistrationNet | FeatureExtractor,
        config: TrainConfig,
        train: Dataset,
        val: Dataset | None = None,
        out: str | Path | None = None,
        metadata: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.network = network
        self.config = config
        self.train_data = train
        self.val_data = val
        self.out = Path(out) if out is not None else None
        self.metadata = dict(metadata or {})
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self.step = 0
        self.best: float | None = None
        shape = train.images.shape[2:]
        check_training_memory(network, shape, config.crop, config.batch_size, device)
        torch.manual_seed(config.seed)
        network.to(self.device)
        self.model: nn.Module = network
        if world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(network, device_ids=ids)
        self.optimiser = torch.optim.Adam(network.parameters(), lr=config.lr)
        self.sampler = self._make_sampler()

    # --- what the two trainers define -------------------------------------------------
    def _make_sampler(self) -> PairSampler:
        raise NotImplementedError

    def _loss(self, batch: list[Pair]) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Scores of the current network on the validation data."""
        raise NotImplementedError

    # --- shared machinery -------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """Whether this process logs and saves."""
        return self.rank == 0

    def _pair_tensors(
        self, pair: Pair, index: int, step: int, n_images: int
    ) -> tuple[Tensor, Tensor | None]:
        """Crop and augment images ``pair`` (one window and one affine for both)."""
        data = self.train_data
        idx = list(pair[:n_images])
        generator = pair_generator(self.config.seed, step, index)
        crop = self.config.crop
        augment = self.config.augment
        margin = crop // 4 if crop is not None and augment.geometric else 0
        outer = crop_window(data.images.shape[2:], crop + 2 * margin if crop else None, generator)
        images = torch.from_numpy(np.ascontiguousarray(data.images[(idx, slice(None), *outer)]))
        labels = None
        if data.labels is not None:
            labels = torch.from_numpy(np.ascontiguousarray(data.labels[(idx, *outer)]))[:, None]
        images, labels = augment_pair(images, labels, augment, generator)
        if margin:
            inner = tuple(
                slice((n - min(crop, n)) // 2, (n - min(crop, n)) // 2 + min(crop, n))
                for n in images.shape[2:]
            )
            images = images[(slice(None), slice(None), *inner)]
            labels = labels[(slice(None), slice(None), *inner)] if labels is not None else None
        return images, labels

    def _batch(self, pairs: list[Pair], n_images: int) -> tuple[Tensor, Tensor | None]:
        """Stack the prepared pairs: ``(n_images, B, C, *crop)`` and labels likewise."""
        items = [
            self._pair_tensors(p, i * self.world_size + self.rank, self.step, n_images)
            for i, p in enumerate(pairs)
        ]
        images = torch.stack([im for im, _ in items], dim=1).to(self.device)
        labels = None
        if items[0][1] is not None:
            labels = torch.stack([lb for _, lb in items], dim=1).to(self.device)
        return images, labels

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a ``.last.pt`` checkpoint (by default the one beside ``out``).

        Parameters
        ----------
        path : str or Path, optional
            The checkpoint.
        """
        if path is None:
            if self.out is None:
                raise ValueError("resuming needs the output model path")
            path = last_checkpoint_path(self.out)
        if not Path(path).is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint {path}; start without --resume")
        try:
            saved = load_model(path)  # refuses a damaged checkpoint: the run stays as it was
        except ValueError as err:
            raise ValueError(f"cannot resume: {err}") from err
        if saved.metadata["network"] != self.network.config():
            raise ValueError(
                f"cannot resume from {path}: it holds another architecture "
                f"({saved.metadata['network']}); use the same options as the first run"
            )
        state = saved.training_state
        if "optimiser" not in state or "step" not in state:
            raise ValueError(
                f"cannot resume from {path}: it is a model file without the training state of "
                "a checkpoint; pass the .last.pt file that training wrote, or run without --resume"
            )
        self.network.load_state_dict(saved.network.state_dict())
        self.optimiser.load_state_dict(state["optimiser"])
        self.step = int(state["step"])
        best = float(state.get("best", float("nan")))
        self.best = None if np.isnan(best) else best

    def _truncate_log(self, step: int) -> None:
        path = log_path(self.out)
        if not path.is_file():
            return
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= step]
        self._write_log(rows, mode="w")

    def _write_log(self, rows: list[dict[str, Any]], mode: str = "a") -> None:
        path = log_path(self.out)
        new = mode == "w" or not path.is_file()
        with open(path, "w" if new else "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def _metadata(self) -> dict[str, Any]:
        data = self.train_data
        return {
            **self.metadata,
            "normalisation": NORMALISATION,
            "class_values": list(data.class_values),
            "num_classes": data.num_classes,
            "train_data": data.source,
            "val_data": self.val_data.source if self.val_data is not None else None,
            "train_config": self.config.to_json(),
            "steps_trained": self.step,
            "world_size": self.world_size,
        }

    def save(self, best: bool = False) -> None:
        """Write the resumable checkpoint, and the model file when it is the one to use.

        Parameters
        ----------
        best : bool
            The current network is the best on validation so far.
        """
        if not self.is_main or self.out is None:
            return
        state = {
            "optimiser": self.optimiser.state_dict(),
            "step": self.step,
            "best": float("nan") if self.best is None else self.best,
        }
        meta = self._metadata()
        last = last_checkpoint_path(self.out)
        try:
            save_model(last, self.network, meta, state)
            if best or self.val_data is None:
                save_model(self.out, self.network, {**meta, "best_validation": self.best})
        except OSError as err:
            then = f"continue with --resume from the intact {last.name}"
            raise OSError(
                f"could not save the checkpoint of step {self.step} in {self.out.parent} "
                f"({err.strerror or err}); free some space or fix the folder, then "
                f"{then if last.is_file() else 'train again'}"
            ) from err

    def run(self, stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Train up to ``config.steps``, yielding an event per step and validation.

        Parameters
        ----------
        stop : callable, optional
            Polled before every step; when it returns True the run saves and ends.

        Yields
        ------
        StepEvent or ValidationEvent
            Progress.
        """
        config = self.config
        start = time.perf_counter()
        batches = self.sampler.batches(start_step=self.step)
        saved_at = self.step
        if self.is_main and self.out is not None:
            self._truncate_log(self.step)  # rows of a stopped run's later steps, or an old run
        try:
            while self.step < config.steps:
                if stop is not None and stop():
                    break
                self.model.train()
                loss, terms = self._loss(next(batches))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss became {loss.item()} at step {self.step + 1}; lower --lr or "
                        "check the data for NaN/inf (the last good checkpoint is kept)"
                    )
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()
                with _interrupts_deferred():  # a step is applied, counted and logged together
                    self.optimiser.step()
                    self.step += 1
                    seconds = time.perf_counter() - start
                    event = StepEvent(self.step, config.steps, loss.item(), terms, seconds)
                    if self.is_main and self.out is not None:
                        row = {"step": self.step, "seconds": f"{seconds:.3f}", "loss": event.loss}
                        self._write_log([{**row, **terms}])
                yield event
                last = self.step == config.steps
                if self.val_data is not None and (self.step % config.val_every == 0 or last):
                    yield self._validation_event(start)
                if self.step % config.checkpoint_every == 0 or last:
                    self.save()
                    saved_at = self.step
        finally:
            if self.step != saved_at and self._weights_finite():
                self.save()

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.network.parameters())

    def _validation_event(self, start: float) -> ValidationEvent:
        scores = self.validate() if self.is_main else {}
        key = "dice" if "dice" in scores else "loss"
        value = scores.get(key, float("nan"))
        score = value if key == "dice" else -value
        best = bool(scores) and (self.best is None or score > self.best)
        if best:
            self.best = score
            self.save(best=True)
        if self.is_main and self.out is not None:
            self._write_log(
                [
                    {
                        "step": self.step,
                        "seconds": f"{time.perf_counter() - start:.3f}",
                        "val_dice": scores.get("dice", ""),
                        "val_loss": scores.get("loss", ""),
                    }
                ]
            )
        return ValidationEvent(
            self.step, self.config.steps, scores, best, time.perf_counter() - start
        )


class FeatureTrainer(Trainer):
    """Trains a :class:`FeatureExtractor` on segmentation (or as an autoencoder)."""

    network: FeatureExtractor

    def _make_sampler(self) -> PairSampler:
        n = len(self.train_data)
        return PairSampler(
            n,
            self.config.batch_size,
            self.config.seed,
            fixed_pairs=[(i, i) for i in range(n)],  # a "pair" of one image
            rank=self.rank,
            world_size=self.world_size,
        )

    def _loss(self, batch: list[Pair]) -> tuple[Tensor, dict[str, float]]:
        images, labels = self._batch(batch, n_images=1)
        out = self.model(images[0])
        if self.network.kind == "autoencoder":
            loss = nn.functional.mse_loss(out, images[0])
        else:
            loss = segmentation_loss(out, labels[0], self.network.dice_weight)
        return loss, {}

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Mean Dice of the argmax segmentation (or reconstruction MSE) on validation images."""
        self.network.eval()
        data = self.val_data
        dices, losses = [], []
        for i in range(len(data)):
            image = torch.from_numpy(data.images[i : i + 1]).to(self.device)
            out = self.network(image)
            if self.network.kind == "autoencoder":
                losses.append(float(nn.functional.mse_loss(out, image)))
            elif data.labels is not None:
                labels = torch.from_numpy(data.labels[i : i + 1]).to(self.device)
                losses.append(float(nn.functional.cross_entropy(out, labels)))
                dices.append(mean_dice(out.argmax(1)[0].cpu(), data.labels[i]))
        scores = {"loss": float(np.mean(losses))} if losses else {}
        if dices:
            scores["dice"] = float(np.mean(dices))
        return scores


class RegistrationTrainer(Trainer):
    """Trains a :class:`RegistrationNet` with a similarity metric and a regulariser.

    Parameters
    ----------
    network, config, train, val, out, metadata, device, rank, world_size
        As for :class:`Trainer`.
    metric : nn.Module
        Similarity loss from :func:`src_training.metrics.get_metric`.
    metric_name : str
        Its registry name.
    lam : float
        Weight of the regulariser.
    regulariser : str
        ``diffusion`` or ``bending``.
    """

    network: RegistrationNet

    def __init__(
        self,
        network: RegistrationNet,
        config: TrainConfig,
        train: Dataset,
        *,
        metric: nn.Module,
        metric_name: str,
        lam: float,
        regulariser: str = "diffusion",
        **kwargs: Any,
    ) -> None:
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"--lam must be a finite number >= 0, got {lam}")
        if METRICS[metric_name].needs_labels and train.num_classes < 2:
            found = "none" if train.labels is None else f"only the value {train.class_values}"
            raise ValueError(
                f"the {metric_name} metric needs label images with at least 2 classes but the "
                f"training data has {found}; pass labelled data or choose another --metric"
            )
        self.metric = metric
        self.metric_name = metric_name
        self.lam = lam
        self.regulariser_name = regulariser
        self.regulariser = get_regulariser(regulariser)
        metadata = {
            **kwargs.pop("metadata", {}),
            "metric": metric_name,
            "lam": lam,
            "regulariser": regulariser,
        }
        super().__init__(network, config, train, metadata=metadata, **kwargs)
        metric.to(self.device)

    def _make_sampler(self) -> PairSampler:
        return PairSampler(
            len(self.train_data),
            self.config.batch_size,
            self.config.seed,
            max_offset=self.config.max_offset,
            fixed_pairs=self.train_data.pairs,
            rank=self.rank,
            world_size=self.world_size,
        )

    def pair_loss(
        self,
        moving: Tensor,
        fixed: Tensor,
        moving_labels: Tensor | None,
        fixed_labels: Tensor | None,
        model: nn.Module | None = None,
    ) -> tuple[Tensor, dict[str, float], Tensor]:
        """Loss ``D(moving o phi, fixed) + lam R(phi)`` of a batch and its displacement."""
        disp = (model or self.model)(moving, fixed)
        extra = {}
        if METRICS[self.metric_name].needs_labels:
            extra["warped_labels"] = warp_onehot(moving_labels, disp, self.train_data.num_classes)
            extra["fixed_labels"] = fixed_labels
        similarity = self.metric(warp(moving, disp), fixed, **extra)
        regularisation = self.regulariser(disp)
        loss = similarity + self.lam * regularisation
        terms = {"similarity": similarity.item(), "regularisation": regularisation.item()}
        return loss, terms, disp

    def _loss(self, batch: list[Pair]) -> tuple[Tensor, dict[str, float]]:
        images, labels = self._batch(batch, n_images=2)
        lm, lf = (labels[0], labels[1]) if labels is not None else (None, None)
        loss, terms, _ = self.pair_loss(images[0], images[1], lm, lf)
        return loss, terms

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Mean Dice and loss over the validation pairs (consecutive frames or the fixed pairs)."""
        self.network.eval()
        data = self.val_data
        pairs = data.pairs if data.pairs is not None else consecutive_pairs(len(data))
        dices, losses = [], []
        for m, f in pairs:
            moving = torch.from_numpy(data.images[m : m + 1]).to(self.device)
            fixed = torch.from_numpy(data.images[f : f + 1]).to(self.device)
            lm = lf = None
            if data.labels is not None:
                lm = torch.from_numpy(data.labels[m : m + 1, None]).to(self.device)
                lf = torch.from_numpy(data.labels[f : f + 1, None]).to(self.device)
            if METRICS[self.metric_name].needs_labels and lm is None:
                continue
            loss, _, disp = self.pair_loss(moving, fixed, lm, lf, model=self.network)
            losses.append(loss.item())
            if lm is not None:
                dices.append(mean_dice(warp_labels(lm, disp)[0, 0].cpu(), data.labels[f]))
        scores = {"loss": float(np.mean(losses))} if losses else {}
        if dices:
            scores["dice"] = float(np.mean(dices))
        return scores


@torch.inference_mode()
def register(
    model: RegistrationNet, moving: Tensor, fixed: Tensor, device: torch.device | str = "cpu"
) -> Tensor:
    """Displacement that warps ``moving`` onto ``fixed`` (no gradients), returned on the CPU.

    Parameters
    ----------
    model : RegistrationNet
        A trained network.
    moving, fixed : Tensor
        ``(B, C, *spatial)`` normalised images.
    device : torch.device or str
        Where to run the network.

    Returns
    -------
    Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.
    """
    model.to(device).eval()
    return model(moving.to(device), fixed.to(device)).cpu()
