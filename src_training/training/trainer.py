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

Nothing in a step waits for the device: batches are cropped and augmented on it
(:class:`~src_training.data.batches.TrainingBatches`), the losses stay there and are
read, checked for NaN/inf and written to the log every ``log_every`` steps, and
always before a checkpoint is saved, so a saved checkpoint never holds weights that a
non-finite loss has touched. The networks run in the configured precision
(:mod:`src_training.runtime.precision`), optionally compiled.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from src_training.data.batches import TrainingBatches
from src_training.data.datasets import Dataset
from src_training.data.normalise import NORMALISATION
from src_training.data.pairs import Pair, PairSampler
from src_training.networks.modelio import ModelFile, load_model, model_kind, save_model
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.runtime.compiling import compile_failure, compile_network
from src_training.runtime.memory import check_training_memory
from src_training.runtime.precision import autocast, gradient_scaler, resolve_precision
from src_training.training.events import (
    LOG_EVERY,
    LOG_FIELDS,
    Event,
    StepEvent,
    TrainConfig,
    ValidationEvent,
    interrupts_deferred,
    last_checkpoint_path,
    log_path,
)
from src_training.training.losses import DeviceLosses


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
        self.precision = resolve_precision(config.precision, self.device)
        self.log_every = config.log_every or (1 if self.device.type == "cpu" else LOG_EVERY)
        shape = train.images.shape[2:]
        value_bytes = 4 if self.precision == "fp32" else 2
        check_training_memory(
            network, shape, config.crop, config.batch_size, device, bytes_per_value=value_bytes
        )
        torch.manual_seed(config.seed)
        network.to(self.device)
        self.model: nn.Module = network
        if world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(network, device_ids=ids)
        if config.compile:
            self.model = compile_network(self.model)
        fused = True if self.device.type == "cuda" else None  # no host sync, even with fp16
        self.optimiser = torch.optim.Adam(network.parameters(), lr=config.lr, fused=fused)
        self.scaler = gradient_scaler(self.device, self.precision)
        self.sampler = self._make_sampler()
        self.batches = TrainingBatches(train, config.crop, config.augment, config.seed, self.device)
        self.losses = DeviceLosses()
        self._diverged = False

    # --- what the two trainers define -------------------------------------------------
    n_images = 2  # images per training pair: 2 for registration, 1 for feature extractors

    def _make_sampler(self) -> PairSampler:
        raise NotImplementedError

    def _loss(self, images: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of a batch (under autocast) and its named parts, all still on the device."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Scores of the current network on the validation data."""
        raise NotImplementedError

    # --- shared machinery -------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """Whether this process logs and saves."""
        return self.rank == 0

    def _batch(self, pairs: list[Pair]) -> tuple[Tensor, Tensor | None]:
        """Crop and augment pairs on the device: ``(n_images, B, C, *crop)``, labels likewise."""
        indices = [i * self.world_size + self.rank for i in range(len(pairs))]
        return self.batches(pairs, indices, self.step, self.n_images)

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
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
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
            "precision": self.precision,
            "steps_trained": self.step,
            "world_size": self.world_size,
        }

    def model_file(self) -> ModelFile:
        """Return the network (moved to the CPU, in eval mode) and what its file would record.

        Returns
        -------
        ModelFile
            The in-memory model, as :func:`~src_training.networks.modelio.load_model`
            would return it from the saved file.
        """
        network = self.network.cpu().eval()
        metadata = {**self._metadata(), "kind": model_kind(network), "network": network.config()}
        return ModelFile(network, metadata)

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
            "scaler": self.scaler.state_dict(),
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
        first = saved_at = self.step
        if self.is_main and self.out is not None:
            self._truncate_log(self.step)  # rows of a stopped run's later steps, or an old run
        try:
            while self.step < config.steps:
                if stop is not None and stop():
                    break
                self.model.train()
                loss, terms = self._step(next(batches))
                with interrupts_deferred():  # a step is applied, counted and logged together
                    self.scaler.step(self.optimiser)
                    self.scaler.update()
                    self.step += 1
                    seconds = time.perf_counter() - start
                    self.losses.add(self.step, seconds, loss, terms)
                    last = self.step == config.steps
                    validate = self.val_data is not None and (
                        self.step % config.val_every == 0 or last
                    )
                    checkpoint = self.step % config.checkpoint_every == 0 or last
                    read = self.step % self.log_every == 0 or self.step == first + 1
                    history = self._read_losses() if read or validate or checkpoint else []
                    loss_value, term_values = self.losses.last
                    event = StepEvent(
                        self.step, config.steps, loss_value, term_values, seconds, tuple(history)
                    )
                yield event
                if validate:
                    yield self._validation_event(start)
                if checkpoint:
                    self.save()
                    saved_at = self.step
        finally:
            if not self._diverged:
                self._read_losses()  # may find a non-finite loss: then nothing is saved
            if self.step != saved_at and not self._diverged and self._weights_finite():
                self.save()

    def _step(self, pairs: list[Pair]) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward and backward pass of a batch; the optimiser step is left to the caller."""
        images, labels = self._batch(pairs)
        try:
            with autocast(self.device, self.precision):
                loss, terms = self._loss(images, labels)
            # Leaving autocast forgets its half-precision copies of the weights, but not
            # inside a caller's autocast region: the next step would use stale copies.
            torch.clear_autocast_cache()
            self.optimiser.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        except Exception as err:
            refusal = compile_failure(err) if self.config.compile else None
            if refusal is not None:
                raise refusal from err
            raise
        return loss, terms

    def _read_losses(self) -> list[tuple[int, float]]:
        """Read the pending losses (one sync), log them, and stop at a non-finite one.

        Returns
        -------
        list of (int, float)
            ``(step, loss)`` of every step read, oldest first.
        """
        rows, bad = self.losses.read()
        if rows and self.is_main and self.out is not None:
            self._write_log(rows)
        if bad is not None:
            self._diverged = True
            raise FloatingPointError(
                f"the loss became {bad[1]} at step {bad[0]}; lower --lr or check the data "
                "for NaN/inf (the last good checkpoint is kept)"
            )
        return [(row["step"], row["loss"]) for row in rows]

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
