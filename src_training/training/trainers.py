"""The trainers: feature extractors (segmentation, autoencoder, denoising) and registration."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from src_training.data.datasets import Dataset
from src_training.data.pairs import PairSampler, consecutive_pairs
from src_training.metrics.dice import batch_mean_dice
from src_training.metrics.registry import Similarity
from src_training.metrics.regularisers import get_regulariser
from src_training.networks.models import FeatureExtractor, RegistrationNet, segmentation_loss
from src_training.runtime.memory import available_memory, registration_memory
from src_training.runtime.precision import autocast
from src_training.spatial.transforms import warp, warp_labels, warp_onehot
from src_training.training.trainer import TrainConfig, Trainer


def validation_batches(
    trainer: Trainer, data: Dataset, pairs: Sequence[tuple[int, ...]]
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Batches of validation images on the trainer's device: ``(n, B, C, *spatial)``.

    One pair at a time on the CPU (batching gains nothing there and costs memory);
    on a GPU as many pairs as the training batch holds and half the free memory fits.
    """
    batch = 1
    if trainer.device.type != "cpu":
        free = available_memory(trainer.device) or 0
        per_pair = registration_memory(trainer.network, data.images.shape[2:], 1)
        batch = max(1, min(trainer.config.batch_size, int(free // (2 * per_pair))))
    for start in range(0, len(pairs), batch):
        index = np.asarray(pairs[start : start + batch]).T  # (n, B)
        images = torch.from_numpy(data.images[index]).to(trainer.device, non_blocking=True)
        labels = None
        if data.labels is not None:
            labels = torch.from_numpy(data.labels[index][:, :, None])
            labels = labels.to(trainer.device, non_blocking=True)
        yield images, labels


class FeatureTrainer(Trainer):
    """Trains a :class:`FeatureExtractor` on segmentation (or as an autoencoder)."""

    network: FeatureExtractor
    n_images = 1

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

    def _loss(self, images: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.model(images[0]).float()
        if self.network.kind == "autoencoder":
            return nn.functional.mse_loss(out, images[0]), {}
        return segmentation_loss(out, labels[0], self.network.dice_weight), {}

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Mean Dice of the argmax segmentation (or reconstruction MSE) on validation images."""
        self.network.eval()
        data = self.val_data
        classes = max(data.num_classes, self.network.unet.head.out_channels)
        losses, dices = [], []
        for images, labels in validation_batches(self, data, [(i,) for i in range(len(data))]):
            with autocast(self.device, self.precision):
                out = self.network(images[0]).float()
            if self.network.kind == "autoencoder":
                error = nn.functional.mse_loss(out, images[0], reduction="none")
                losses.append(error.flatten(1).mean(1))
            elif labels is not None:
                target = labels[0, :, 0]
                error = nn.functional.cross_entropy(out, target, reduction="none")
                losses.append(error.flatten(1).mean(1))
                dices.append(batch_mean_dice(out.argmax(1), target, classes))
        return _scores(losses, dices)


class DenoisingTrainer(FeatureTrainer):
    """Trains an autoencoder extractor without labels to denoise (Noise2Noise).

    Each training item is one crop seen twice, with the same random affine and
    independent Gaussian noise of the configured ``augment.noise``: the network maps
    the first noisy view onto the second. Since the noise of the two views is
    independent and zero-mean, the expected loss is least for the clean image, so it
    learns to denoise without ever seeing a clean target (Lehtinen et al., 2018), and
    its encoder features become what DeepSim-AE compares. Validation is the clean
    reconstruction error, as for a plain autoencoder.
    """

    n_images = 2

    def __init__(
        self, network: FeatureExtractor, config: TrainConfig, train: Dataset, *args: Any, **kw: Any
    ) -> None:
        if network.kind != "autoencoder":
            raise ValueError(
                "--self-supervised trains an autoencoder (compared by --metric deepsim-ae); "
                "leave --kind out or pass --kind autoencoder"
            )
        if not config.augment.noise > 0:
            raise ValueError(
                "--self-supervised learns to remove noise and needs --noise > 0; "
                "leave --noise out for its default"
            )
        super().__init__(network, config, train, *args, **kw)

    def _loss(self, images: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.model(images[0]).float()
        return nn.functional.mse_loss(out, images[1]), {}


class RegistrationTrainer(Trainer):
    """Trains a :class:`RegistrationNet` with a similarity metric and a regulariser.

    Parameters
    ----------
    network, config, train, val, out, metadata, device, rank, world_size
        As for :class:`Trainer`.
    metric : Similarity
        The similarity metric, from :func:`src_training.metrics.build_metric`.
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
        metric: Similarity,
        lam: float,
        regulariser: str = "diffusion",
        **kwargs: Any,
    ) -> None:
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"--lam must be a finite number >= 0, got {lam}")
        if metric.needs_labels and train.num_classes < 2:
            found = "none" if train.labels is None else f"only the value {train.class_values}"
            raise ValueError(
                f"the {metric.name} metric needs label images with at least 2 classes but the "
                f"training data has {found}; pass labelled data or choose another --metric"
            )
        self.metric = metric
        self.lam = lam
        self.regulariser_name = regulariser
        self.regulariser = get_regulariser(regulariser)
        metadata = {
            **kwargs.pop("metadata", {}),
            **metric.metadata,
            "metric": metric.name,
            "lam": lam,
            "regulariser": regulariser,
        }
        super().__init__(network, config, train, metadata=metadata, **kwargs)
        metric.loss.to(self.device)

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
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Loss ``D(moving o phi, fixed) + lam R(phi)`` of a batch, its parts and the field.

        The network runs in the caller's autocast precision; the field is float32
        before it warps or is regularised, and the parts stay on the device.
        """
        disp = (model or self.model)(moving, fixed).float()
        extra = {}
        if self.metric.needs_labels:
            extra["warped_labels"] = warp_onehot(moving_labels, disp, self.train_data.num_classes)
            extra["fixed_labels"] = fixed_labels
        similarity = self.metric(warp(moving, disp), fixed, **extra)
        regularisation = self.regulariser(disp)
        loss = similarity + self.lam * regularisation
        terms = {"similarity": similarity.detach(), "regularisation": regularisation.detach()}
        return loss, terms, disp

    def _loss(self, images: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        lm, lf = (labels[0], labels[1]) if labels is not None else (None, None)
        loss, terms, _ = self.pair_loss(images[0], images[1], lm, lf)
        return loss, terms

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Mean Dice and loss over the validation pairs (consecutive frames or the fixed pairs).

        Dice only where the validation labels hold two classes or more
        (:attr:`~src_training.data.datasets.Dataset.labelled`); without, the validation
        loss alone scores the run and picks the best checkpoint.
        """
        self.network.eval()
        data = self.val_data
        pairs = data.pairs if data.pairs is not None else consecutive_pairs(len(data))
        if self.metric.needs_labels and data.labels is None:
            return {}
        losses, dices = [], []
        scored = data.labelled  # unlabelled frames would all score a Dice of 1
        for images, labels in validation_batches(self, data, pairs):
            lm, lf = (labels[0], labels[1]) if labels is not None else (None, None)
            with autocast(self.device, self.precision):
                loss, _, disp = self.pair_loss(images[0], images[1], lm, lf, model=self.network)
            losses.append(loss.detach().expand(len(disp)))  # the pairs' mean, once per pair
            if lm is not None and scored:
                warped = warp_labels(lm, disp)[:, 0]
                dices.append(batch_mean_dice(warped, lf[:, 0], data.num_classes))
        return _scores(losses, dices)


def _scores(losses: list[Tensor], dices: list[Tensor]) -> dict[str, float]:
    """Mean loss and Dice over the validated items (``(B,)`` tensors per batch), read once."""
    scores = {}
    if losses:
        scores["loss"] = float(torch.cat(losses).double().mean())
    if dices:
        scores["dice"] = float(torch.cat(dices).mean())
    return scores
