"""Which images are registered to which: pair lists and the per-epoch training sampler.

A pair is ``(moving, fixed)``, two indices into a dataset's images.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

Pair = tuple[int, int]


def consecutive_pairs(n: int) -> list[Pair]:
    """Each frame registered to its predecessor: ``(t + 1, t)`` (the evaluation default).

    Parameters
    ----------
    n : int
        Number of frames.

    Returns
    -------
    list of tuple of int
        ``n - 1`` pairs.
    """
    return [(t + 1, t) for t in range(n - 1)]


def atlas_pairs(n: int, atlas: int) -> list[Pair]:
    """Every image registered to the atlas image ``atlas``.

    Parameters
    ----------
    n : int
        Number of images, the atlas included.
    atlas : int
        Index of the atlas.

    Returns
    -------
    list of tuple of int
        ``(i, atlas)`` for every ``i != atlas``.
    """
    if not 0 <= atlas < n:
        raise ValueError(f"the atlas index {atlas} is outside the {n} images")
    return [(i, atlas) for i in range(n) if i != atlas]


def read_pairs_csv(path: str | Path, names: Sequence[str]) -> list[Pair]:
    """Read explicit pairs from a CSV file with the columns ``moving`` and ``fixed``.

    Each cell is an image name (as in ``names``) or a 0-based index.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    names : sequence of str
        The dataset's image names.

    Returns
    -------
    list of tuple of int
        The pairs in file order.
    """
    lookup = {name: i for i, name in enumerate(names)}

    def index(cell: str, line: int) -> int:
        cell = cell.strip()
        if cell in lookup:
            return lookup[cell]
        if cell.lstrip("-").isdigit() and 0 <= int(cell) < len(names):
            return int(cell)
        raise ValueError(
            f"{path}, line {line}: {cell!r} is neither an image name nor an index below "
            f"{len(names)}; use names like {names[0]!r} or indices"
        )

    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"moving", "fixed"} <= set(reader.fieldnames):
            raise ValueError(f"{path} needs a header with the columns 'moving' and 'fixed'")
        pairs = [(index(r["moving"], i), index(r["fixed"], i)) for i, r in enumerate(reader, 2)]
    if not pairs:
        raise ValueError(f"{path} lists no pairs; add lines of the form moving,fixed")
    return pairs


def _check_neighbours(n: int, max_offset: int) -> None:
    if n < 2:
        raise ValueError(
            f"training pairs need at least 2 frames but the data has {n}; select more frames"
        )
    if max_offset < 1:
        raise ValueError(f"the pair offset must be at least 1, got {max_offset}")


def neighbour_epoch(n: int, max_offset: int, generator: torch.Generator) -> list[Pair]:
    """Draw one epoch of training pairs of frames at most ``max_offset`` apart.

    Every frame is fixed once, in random order, with a random partner at most
    ``max_offset`` frames away (re-drawn every epoch, as the paper did).

    Parameters
    ----------
    n : int
        Number of frames (at least 2).
    max_offset : int
        Largest frame distance (at least 1).
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    list of tuple of int
        ``n`` pairs.
    """
    _check_neighbours(n, max_offset)
    pairs = []
    for fixed in torch.randperm(n, generator=generator).tolist():
        lo, hi = max(0, fixed - max_offset), min(n - 1, fixed + max_offset)
        partners = [i for i in range(lo, hi + 1) if i != fixed]
        pick = int(torch.randint(len(partners), (1,), generator=generator))
        pairs.append((partners[pick], fixed))
    return pairs


class PairSampler:
    """Batches of training pairs, epoch after epoch, deterministic given the seed.

    With ``fixed_pairs`` the same list is shuffled every epoch; otherwise pairs of
    nearby frames are re-drawn with :func:`neighbour_epoch`. Under distributed
    training each rank takes every ``world_size``-th pair of the same global epoch,
    so the ranks together see what one process would.

    Parameters
    ----------
    n : int
        Number of images.
    batch_size : int
        Pairs per batch and rank.
    seed : int
        Seed; epoch ``e`` uses ``seed + e``.
    max_offset : int
        Largest frame distance of neighbour pairs.
    fixed_pairs : sequence of tuple of int, optional
        Explicit pairs (paired layouts, atlas or CSV pairs).
    rank, world_size : int
        This process's shard.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        max_offset: int = 2,
        fixed_pairs: Sequence[Pair] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}")
        if fixed_pairs is None:
            _check_neighbours(n, max_offset)
        elif not fixed_pairs:
            raise ValueError("there are no training pairs; select frames that form pairs")
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.max_offset = max_offset
        self.fixed_pairs = list(fixed_pairs) if fixed_pairs is not None else None
        self.rank = rank
        self.world_size = world_size

    def epoch(self, epoch: int) -> list[Pair]:
        """All pairs of ``epoch`` for this rank, in order."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.fixed_pairs is not None:
            order = torch.randperm(len(self.fixed_pairs), generator=generator).tolist()
            pairs = [self.fixed_pairs[i] for i in order]
        else:
            pairs = neighbour_epoch(self.n, self.max_offset, generator)
        return pairs[self.rank :: self.world_size]

    def batches(self, start_step: int = 0) -> Iterator[list[Pair]]:
        """Endless batches, skipping the first ``start_step`` (to resume a run exactly).

        A global batch is ``batch_size * world_size`` pairs of one epoch's list; the
        last incomplete batch of an epoch is completed from the next epoch's pairs.
        """
        step = 0
        epoch = 0
        pending: list[Pair] = []
        while True:
            while len(pending) < self.batch_size:
                pending += self.epoch(epoch)
                epoch += 1
            batch, pending = pending[: self.batch_size], pending[self.batch_size :]
            if step >= start_step:
                yield batch
            step += 1
