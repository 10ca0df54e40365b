"""The two trainers: a feature extractor (segmentation or autoencoder) and a registration model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from src_training.data.datasets import Dataset
from src_training.data.pairs import Pair, PairSampler, consecutive_pairs
from src_training.metrics.dice import mean_dice
from src_training.metrics.registry import Similarity
from src_training.metrics.regularisers import get_regulariser
from src_training.networks.models import FeatureExtractor, RegistrationNet, segmentation_loss
from src_training.spatial.transforms import warp, warp_labels, warp_onehot
from src_training.training.trainer import TrainConfig, Trainer


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
    ) -> tuple[Tensor, dict[str, float], Tensor]:
        """Loss ``D(moving o phi, fixed) + lam R(phi)`` of a batch and its displacement."""
        disp = (model or self.model)(moving, fixed)
        extra = {}
        if self.metric.needs_labels:
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
            if self.metric.needs_labels and lm is None:
                continue
            loss, _, disp = self.pair_loss(moving, fixed, lm, lf, model=self.network)
            losses.append(loss.item())
            if lm is not None:
                dices.append(mean_dice(warp_labels(lm, disp)[0, 0].cpu(), data.labels[f]))
        scores = {"loss": float(np.mean(losses))} if losses else {}
        if dices:
            scores["dice"] = float(np.mean(dices))
        return scores
