"""A local stand-in for a Cell Tracking Challenge archive (no download in tests)."""

import zipfile
from dataclasses import replace

import numpy as np
import tifffile

from src_training.data import ctc
from src_training.data.samples import noisy_cell_sequence

NAME = "PhC-C2DH-U373"
GT_TIMES = (1, 3)


def write_dataset(root):
    """Sequence 01 with silver truth on every frame; 02 with sparse gold truth only."""
    seq = noisy_cell_sequence(n_frames=5, size=32)
    for name in ("01", "02"):
        (root / name).mkdir(parents=True)
        for t, frame in enumerate(seq.images):
            tifffile.imwrite(root / name / f"t{t:03d}.tif", (frame * 1000).astype(np.uint16))
    (root / "01_ST" / "SEG").mkdir(parents=True)
    for t, label in enumerate(seq.labels):
        tifffile.imwrite(root / "01_ST" / "SEG" / f"man_seg{t:03d}.tif", label.astype(np.uint16))
    (root / "02_GT" / "SEG").mkdir(parents=True)
    for t in GT_TIMES:
        tifffile.imwrite(root / "02_GT" / "SEG" / f"man_seg{t:03d}.tif", seq.labels[t])
    return seq


def serve_archive(tmp_path, monkeypatch):
    """Zip the layout and serve it at a file:// address in place of the Challenge's."""
    source = tmp_path / "source"
    seq = write_dataset(source / NAME)
    path = tmp_path / "served.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        for file in sorted((source / NAME).rglob("*")):
            bundle.write(file, file.relative_to(source).as_posix())
    monkeypatch.setitem(ctc.DATASETS, NAME, replace(ctc.DATASETS[NAME], url=path.as_uri()))
    return path, seq
