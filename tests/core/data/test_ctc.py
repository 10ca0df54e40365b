"""The Cell Tracking Challenge loader on a local archive of the Challenge's layout."""

import hashlib
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from ctc_layout import GT_TIMES, NAME, serve_archive, write_dataset

from src_training.data import ctc


@pytest.fixture
def archive(tmp_path, monkeypatch, served):
    return serve_archive(tmp_path, monkeypatch, served[0])


def test_fetch_downloads_once_records_the_hash_and_then_uses_the_cache(archive, tmp_path, served):
    path, _ = archive
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="deepsim fetch PhC-C2DH-U373"):
        ctc.fetch(NAME, cache=cache)
    lines = []
    folder = ctc.fetch(NAME, cache=cache, download=True, report=lines.append)
    assert folder == cache / NAME and (folder / "01" / "t004.tif").is_file()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (cache / f"{NAME}.zip.sha256").read_text().split()[0] == digest
    assert lines[0].startswith("downloading http://127.0.0.1") and "recorded SHA-256" in lines[2]
    assert sorted(p.name for p in cache.iterdir()) == [NAME, f"{NAME}.zip", f"{NAME}.zip.sha256"]
    assert served[1] == ["/served.zip"]

    assert ctc.fetch(NAME, cache=cache, download=True) == folder
    assert served[1] == ["/served.zip"]  # the cached archive: no second request
    with (cache / f"{NAME}.zip").open("ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(ValueError, match=r"SHA-256 \w+ but \w+ was expected"):
        ctc.fetch(NAME, cache=cache)


def test_a_given_checksum_is_enforced(archive, tmp_path):
    path, _ = archive
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert ctc.fetch(NAME, cache=tmp_path / "a", download=True, sha256=digest.upper()).is_dir()
    with pytest.raises(ValueError, match="corrupt or the archive changed"):
        ctc.fetch(NAME, cache=tmp_path / "b", download=True, sha256="0" * 64)
    assert not (tmp_path / "b" / NAME).exists()


@pytest.mark.parametrize("where", ["missing.zip", "closed"])
def test_a_failed_download_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, served, where):
    url = f"{served[0]}/missing.zip" if where == "missing.zip" else "http://127.0.0.1:9/a.zip"
    monkeypatch.setitem(ctc.DATASETS, NAME, replace(ctc.DATASETS[NAME], url=url))
    with pytest.raises(OSError, match=r"could not download .* check the connection") as caught:
        ctc.fetch(NAME, cache=tmp_path / "cache", download=True)
    assert "\n" not in str(caught.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_archive_escaping_its_folder_is_refused(tmp_path, monkeypatch, served):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(f"{NAME}/01/t000.tif", b"x")
        bundle.writestr("../escaped.txt", b"x")
    entry = replace(ctc.DATASETS[NAME], url=f"{served[0]}/evil.zip")
    monkeypatch.setitem(ctc.DATASETS, NAME, entry)
    with pytest.raises(ValueError, match="outside its folder"):
        ctc.fetch(NAME, cache=tmp_path / "cache", download=True)
    assert not (tmp_path / "escaped.txt").exists()


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="PhC-C2DH-U373"):
        ctc.fetch("Fluo-N2DH-XYZ")


def test_read_sequence_prefers_silver_truth_and_keeps_sparse_gold_frames(tmp_path):
    seq = write_dataset(tmp_path / NAME)
    full = ctc.read_sequence(tmp_path / NAME / "01")
    assert full.times == [0, 1, 2, 3, 4] and "01_ST/SEG" in full.source
    np.testing.assert_array_equal(full.labels, seq.labels)
    np.testing.assert_array_equal(full.frames, (seq.images * 1000).astype(np.uint16))
    sparse = ctc.read_sequence(tmp_path / NAME / "02")
    assert sparse.times == list(GT_TIMES) and "left out" in sparse.source
    np.testing.assert_array_equal(sparse.labels, seq.labels[list(GT_TIMES)])
    unlabelled = ctc.read_sequence(tmp_path / NAME / "02", labels=False)
    assert unlabelled.labels is None and unlabelled.times == [0, 1, 2, 3, 4]
    assert ctc.is_sequence(tmp_path / NAME / "01")
    assert not ctc.is_sequence(tmp_path / NAME / "01_ST")
    with pytest.raises(ValueError, match="no CTC frames"):
        ctc.read_sequence(tmp_path / NAME / "01_ST")


def test_deepsim_fetch_then_every_command_reads_a_sequence(archive, tmp_path, capsys):
    from src_training.cli import main
    from src_training.data.datasets import load_dataset

    cache = tmp_path / "cache"
    assert main(["fetch", NAME, "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"{cache / NAME / '01'}\n" in out and f"{cache / NAME / '02'}\n" in out
    full = load_dataset(cache / NAME / "01", labels="foreground")
    assert len(full) == 5 and full.labels.max() == 1 and "01_ST/SEG" in full.source
    sparse = load_dataset(cache / NAME / "02")
    assert sparse.names == ["t001", "t003"]
    assert main(["fetch", "Fluo-N2DH-XYZ", "--cache", str(cache)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
