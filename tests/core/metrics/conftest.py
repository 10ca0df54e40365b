"""Fixtures of the feature metrics' tests: the built-in EM extractor and a real EM section."""

from pathlib import Path

import numpy as np
import pytest
import torch

from src_training.data.datasets import load_image_file
from src_training.engine.metrics import load_extractor

ISBI = Path(__file__).resolve().parents[4] / "shared" / "data" / "isbi2012_em" / "images"


@pytest.fixture(scope="module")
def extractor():
    """The built-in em-2d segmentation extractor."""
    return load_extractor("em-2d", "deepsim", 2, 1)


@pytest.fixture(scope="module")
def section():
    """A 128² crop of ISBI section 0, normalised, as ``(1, 1, 128, 128)``."""
    image, _ = load_image_file(ISBI / "00.png")  # (1, 512, 512), normalised
    return torch.from_numpy(np.ascontiguousarray(image[:, 160:288, 160:288]))[None]
