"""``deepsim register --series STACK --out OUT.zarr``: resumable stores, bad stores refused."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from src_training.data.seriesstore import image_group

pytestmark = pytest.mark.slow  # each test runs the installed command in fresh processes

DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
ENV_THREADS = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def model(moving_model_file):
    return moving_model_file


def stack_store(path, axes="tyx", frames=6):
    array = (np.random.default_rng(0).random((frames, 1, 24, 20)) * 99).astype(np.float32)
    array = array[:, 0] if len(axes) == 3 else array
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    image_group(root, "stack", array.shape, axes, (0.5, 0.25))[:] = array
    return path


def deepsim(*args):
    import os

    env = os.environ | ENV_THREADS
    return subprocess.run([DEEPSIM, *map(str, args)], capture_output=True, text=True, env=env)


def digest(folder):
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_a_stopped_series_is_completed_by_resume_and_equals_a_whole_run(model, tmp_path):
    source = stack_store(tmp_path / "in.zarr")
    run = ("register", "--model", model, "--series", source, "--reference", "previous")
    whole = deepsim(*run, "--out", tmp_path / "whole.zarr", "--device", "cpu")
    assert whole.returncode == 0, whole.stderr
    assert "registered 6 frames" in whole.stdout
    cut = tmp_path / "cut.zarr"
    assert deepsim(*run, "--out", cut, "--device", "cpu").returncode == 0
    root = zarr.open_group(str(cut), mode="r+")
    root["done"][3:] = 0  # as if the run had died after frame 2
    root["0"][4] = -1.0
    again = deepsim(*run, "--out", cut, "--device", "cpu")
    assert again.returncode == 2 and "pass --resume" in again.stderr  # never overwritten
    resumed = deepsim(*run, "--out", cut, "--device", "cpu", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "registered 3 frames" in resumed.stdout and "3 finished before" in resumed.stdout
    a = zarr.open_group(str(tmp_path / "whole.zarr"), mode="r")
    b = zarr.open_group(str(cut), mode="r")
    for name in ("0", "fields/0", "jacobians/0", "metrics"):
        np.testing.assert_allclose(b[name][:], a[name][:], atol=1e-5, err_msg=name)
    attrs = b["fields"].attrs.asdict()
    assert attrs["deepsim-field"]["spacing"] == [0.5, 0.25]
    assert attrs["deepsim-field"]["provenance"]["reference"] == "previous"
    assert attrs["multiscales"][0]["axes"][0]["name"] == "t"


def test_a_local_cluster_gives_the_single_process_store(model, tmp_path):
    source = stack_store(tmp_path / "in.zarr")
    run = ("register", "--model", model, "--series", source, "--reference", "2")
    here = deepsim(*run, "--out", tmp_path / "here.zarr", "--device", "cpu")
    there = deepsim(*run, "--out", tmp_path / "there.zarr", "--cluster", "local:1")
    assert there.returncode == 0, there.stderr
    assert "on local:1" in there.stdout and here.returncode == 0
    a = zarr.open_group(str(tmp_path / "here.zarr"), mode="r")["fields/0"][:]
    b = zarr.open_group(str(tmp_path / "there.zarr"), mode="r")["fields/0"][:]
    np.testing.assert_allclose(b, a, atol=1e-4)


def _missing_array(path):
    stack_store(path)
    root = zarr.open_group(str(path), mode="r+")
    del root["0"]


def _wrong_axes(path):
    stack_store(path, axes="cyx")


def _missing_chunk(path):
    stack_store(path)
    (path / "0" / "3.0.0").unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_missing_array, "lists the array '0', which is missing"),
        (_wrong_axes, "has axes 'cyx'; a series needs a time axis"),
        (_missing_chunk, "is missing 1 of its 6 chunks"),
    ],
)
def test_a_bad_store_is_one_line_exit_2_and_nothing_is_overwritten(
    model, tmp_path, damage, message
):
    good = stack_store(tmp_path / "good.zarr")
    out = tmp_path / "out.zarr"
    assert deepsim("register", "--model", model, "--series", good, "--out", out).returncode == 0
    before = digest(out)
    bad = tmp_path / "bad.zarr"
    damage(bad)
    for extra in ((), ("--overwrite",)):
        proc = deepsim("register", "--model", model, "--series", bad, "--out", out, *extra)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("deepsim: error:"), proc.stderr
        assert message in lines[0]
    assert digest(out) == before


def test_store_flags_without_a_store_are_refused(model, tmp_path):
    source = stack_store(tmp_path / "in.zarr")
    proc = deepsim("register", "--model", model, "--series", source, "--out", tmp_path / "d",
                   "--resume")  # fmt: skip
    assert proc.returncode == 2 and "--out OUT.zarr" in proc.stderr
    proc = deepsim("register", "--model", model, "--series", source, "--out", tmp_path / "o.zarr",
                   "--cluster", "lokal")  # fmt: skip
    assert proc.returncode == 2 and "--cluster must be local" in proc.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "o.zarr").exists()
