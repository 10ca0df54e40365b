"""Model files: round trips, safety against pickles, versions, atomic writes, checksums."""

import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from src_training.cli import main
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


def _payload(path):
    return torch.load(path, weights_only=True)


def _legacy(tmp_path, name="old.pt"):
    """A model file as saved before files carried a checksum and a seal."""
    payload = _payload(save_model(tmp_path / "new.pt", RegistrationNet(2, channels=SMALL), {}))
    del payload["checksum"]
    torch.save(payload, tmp_path / name)
    return tmp_path / name


def test_every_file_carries_a_content_checksum_and_a_seal_over_its_bytes(tmp_path):
    path = save_model(tmp_path / "r.pt", RegistrationNet(2, channels=SMALL), {"metric": "ncc"})
    data = path.read_bytes()
    seal = data[-modelio.SEAL_SIZE :]
    assert seal.startswith(modelio.SEAL_PREFIX)
    assert seal[-64:].decode() == hashlib.sha256(data[: -modelio.SEAL_SIZE]).hexdigest()
    assert zipfile.ZipFile(path).comment == seal  # a zip comment: zip readers still read it
    payload = _payload(path)
    assert payload["checksum"] == modelio.content_checksum(payload)


def test_the_content_checksum_covers_every_tensor_and_the_metadata_in_a_fixed_order():
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2, dtype=torch.int64)}
    payload = {
        "format": modelio.FORMAT,
        "format_version": 1,
        "metadata": '{"kind": "registration"}',
        "state_dict": state,
        "training_state": {"optimiser": {"state": {0: {"step": torch.tensor(3.0)}}}, "step": 3},
    }
    checksum = modelio.content_checksum(payload)
    reordered = {**payload, "state_dict": {"b": state["b"], "a": state["a"]}}
    assert modelio.content_checksum(reordered) == checksum
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    assert modelio.content_checksum(torch.load(io.BytesIO(buffer.getvalue()))) == checksum
    changed = [
        {**payload, "metadata": '{"kind": "features"}'},
        {**payload, "state_dict": {**state, "a": state["a"].reshape(3, 2)}},  # same bytes
        {**payload, "state_dict": {**state, "b": state["b"].view(torch.float64)}},  # same bytes
        {**payload, "state_dict": {**state, "a": state["a"] + 1e-6}},
        {**payload, "training_state": {**payload["training_state"], "step": 4}},
    ]
    assert all(modelio.content_checksum(p) != checksum for p in changed)
    with pytest.raises(TypeError, match="cannot hold a set"):
        modelio.content_checksum({**payload, "metadata": {1, 2}})


def test_changed_weights_are_refused_even_under_a_valid_seal(tmp_path):
    path = save_model(tmp_path / "r.pt", RegistrationNet(2, channels=SMALL), {})
    payload = _payload(path)
    payload["state_dict"]["unet.head.bias"] += 1.0  # as if damaged in memory before saving
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(modelio._sealed(buffer.getvalue()))
    with pytest.raises(
        ValueError, match=r"r\.pt is damaged \(its content differs from its checksum"
    ):
        load_model(path)


def test_a_checksum_without_its_seal_is_refused(tmp_path):
    path = save_model(tmp_path / "r.pt", RegistrationNet(2, channels=SMALL), {})
    torch.save(_payload(path), path)  # the same content, written without the seal
    with pytest.raises(ValueError, match=r"damaged \(its end is cut off or altered\); restore"):
        load_model(path)


def test_a_file_saved_before_checksums_loads_with_a_one_line_note(tmp_path, capsys):
    path = _legacy(tmp_path)
    with pytest.warns(modelio.UncheckedModelWarning, match=r"old\.pt carries no checksum"):
        assert load_model(path).kind == "registration"
    assert main(["info", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"deepsim: note: {path} carries no checksum")


def test_a_crash_before_the_rename_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = save_model(tmp_path / "m.pt", RegistrationNet(2, channels=SMALL), {"version": 1})
    before = path.read_bytes()

    def killed(src, dst):
        raise KeyboardInterrupt  # the process stopped between the write and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_model(path, RegistrationNet(2, channels=SMALL), {"version": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
