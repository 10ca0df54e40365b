"""A stack registered with a model reports each forward pass and gives the same fields."""

import numpy as np
import pytest
import torch

from src_training.engine.registration import Progress
from src_training.engine.series import register_stack
from src_training.networks.modelio import load_model, save_model
from src_training.networks.models import RegistrationNet
from src_training.registration.inference import register_series


@pytest.mark.parametrize("reference", ["previous", 2])
def test_one_frame_per_pass_reports_every_frame_and_matches_the_batched_fields(reference, tmp_path):
    torch.manual_seed(0)
    model = load_model(save_model(tmp_path / "reg.pt", RegistrationNet(2, channels=(4, 8)), {}))
    network = model.network
    frames = np.random.default_rng(0).random((5, 1, 32, 32)).astype(np.float32)
    events = register_stack(model, frames, reference, batch_size=1)
    progress = []
    while True:
        try:
            progress.append(next(events))
        except StopIteration as end:
            series = end.value
            break
    frames_done = [p.what for p in progress if isinstance(p, Progress)][:-1]
    first = 2 if reference == "previous" else 1
    assert frames_done == [f"frame {k}/5" for k in range(first, 6)]
    batched = register_series(network, frames, reference, batch_size=8).displacements
    np.testing.assert_allclose(series.fields, batched.numpy(), atol=1e-5)
    np.testing.assert_array_equal(series.fields[series.reference], 0)
