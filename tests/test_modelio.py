"""Model files: round trips, safety against pickles, versions, atomic writes."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from src_training.networks import modelio
from src_training.networks.modelio import load_model, require_kind, save_model
from src_training.networks.models import FeatureExtractor, RegistrationNet

SMALL = (4, 8)


def test_registration_model_round_trip(tmp_path):
    net = RegistrationNet(2, channels=SMALL, diffeomorphic=True, int_steps=5)
    torch.nn.init.normal_(net.unet.head.weight, std=0.1)
    path = save_model(
        tmp_path / "r.pt", net, {"metric": "ncc", "lam": 0.5, "class_values": [0, 255]}
    )
    loaded = load_model(path)
    assert loaded.kind == "registration" and loaded.ndim == 2
    assert loaded.metadata["metric"] == "ncc" and loaded.metadata["class_values"] == [0, 255]
    assert loaded.metadata["package_version"] and loaded.metadata["torch_version"]
    x = torch.rand(1, 1, 20, 20)
    torch.testing.assert_close(loaded.network(x, x.flip(-1)), net.eval()(x, x.flip(-1)))


def test_feature_extractor_round_trip(tmp_path):
    net = FeatureExtractor(3, num_classes=4, channels=SMALL, kind="segmentation")
    loaded = load_model(save_model(tmp_path / "f.pt", net, {}))
    assert loaded.kind == "features" and loaded.network.kind == "segmentation"
    x = torch.rand(1, 1, 8, 8, 8)
    for a, b in zip(loaded.network.features(x), net.eval().features(x), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="registration model made by `deepsim train`"):
        require_kind(loaded, "registration", "f.pt")


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_posing_as_a_model_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": modelio.FORMAT, "payload": exploit}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(path)
    assert not marker.exists()
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump(exploit, handle)
    with pytest.raises(ValueError):
        load_model(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_damaged_files_give_clear_errors(tmp_path):
    good = save_model(tmp_path / "good.pt", RegistrationNet(2, channels=SMALL), {})
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        load_model(tmp_path / "empty.pt")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a model file"):
        load_model(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a napari-deepsim model file"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt does not exist"):
        load_model(tmp_path / "missing.pt")


def test_a_file_from_a_newer_version_asks_to_upgrade(tmp_path, monkeypatch):
    monkeypatch.setattr(modelio, "FORMAT_VERSION", modelio.FORMAT_VERSION + 1)
    path = save_model(tmp_path / "new.pt", RegistrationNet(2, channels=SMALL), {})
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"newer napari-deepsim.*upgrade"):
        load_model(path)


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = save_model(tmp_path / "m.pt", RegistrationNet(2, channels=SMALL), {"version": 1})
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        save_model(path, RegistrationNet(2, channels=SMALL), {"version": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["m.pt"]
    assert load_model(path).metadata["version"] == 1
