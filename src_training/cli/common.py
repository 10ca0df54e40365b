"""What several ``deepsim`` sub-commands share: reading datasets, checking numbers, CSV."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from src_training.data.atlas import with_atlas
from src_training.data.datasets import Dataset, load_dataset, parse_frames


def non_negative(value: float, option: str) -> float:
    """Return ``value``, refusing a negative or infinite number for ``option``."""
    if not 0 <= value < float("inf"):
        raise ValueError(f"{option} must be a finite number >= 0, got {value}")
    return value


def dataset(args: argparse.Namespace, frames: str | None) -> Dataset:
    """Read ``args.data`` (frames ``A:B``) with the data options, and the atlas if given."""
    data = load_dataset(
        args.data,
        frames=parse_frames(frames) if frames else None,
        labels=args.labels,
        ndim=args.ndim,
        label_file=args.label_file,
    )
    return with_atlas(data, args.atlas, args.atlas_labels, args.data)


def write_csv(path: Path, rows: list[dict[str, Any]], first: list[str]) -> None:
    """Write rows as CSV with the ``first`` columns first and every other key after."""
    fields = list(first)
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
