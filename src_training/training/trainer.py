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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from src_training.data.augment import augment_pair, crop_window, pair_generator
from src_training.data.datasets import Dataset
from src_training.data.normalise import NORMALISATION
from src_training.data.pairs import Pair, PairSampler
from src_training.networks.modelio import ModelFile, load_model, model_kind, save_model
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.runtime.memory import check_training_memory
from src_training.training.events import (
    LOG_FIELDS,
    Event,
    StepEvent,
    TrainConfig,
    ValidationEvent,
    interrupts_deferred,
    last_checkpoint_path,
    log_path,
)


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
                with interrupts_deferred():  # a step is applied, counted and logged together
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
