"""Series of any length: lazy inputs, the resumable OME-Zarr store, the Dask cluster path."""

import os
import signal

import distributed
import numpy as np
import pytest
import tifffile
import zarr

from benchmarks.bench_bigstacks import StartLog
from src_training.data.lazy import FrameSource, open_stack
from src_training.data.seriesstore import image_group
from src_training.engine.registration import run_to_end
from src_training.engine.series import register_stack
from src_training.engine.stored import register_stack_to_store
from src_training.networks.modelio import load_model


@pytest.fixture(scope="module")
def model(moving_model_file):
    return load_model(moving_model_file)


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(1)
    return (rng.random((7, 40, 36)) * 200 + 50).astype(np.float32)


def ome_zarr(path, array, axes="tyx"):
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    image_group(root, "stack", array.shape, axes, (1.0, 1.0))[:] = array
    return path


def in_memory(model, raw, reference):
    frames = FrameSource(raw, 2)
    stacked = np.stack([frames[t] for t in range(len(frames))])
    return run_to_end(register_stack(model, stacked, reference)).fields


def stored(path):
    root = zarr.open_group(str(path), mode="r")
    return {name: root[name][:] for name in ("0", "fields/0", "jacobians/0", "metrics", "done")}


@pytest.mark.parametrize("reference", [3, "previous"])
def test_zarr_tiff_and_dask_stacks_give_the_fields_of_the_stack_in_memory(
    model, raw, reference, tmp_path, single_thread
):
    import dask.array as da

    expected = in_memory(model, raw, reference)
    assert np.abs(expected).max() > 0.5  # the fields really move pixels
    tifffile.imwrite(tmp_path / "s.tif", raw)
    sources = {
        "ome-zarr": open_stack(ome_zarr(tmp_path / "s.zarr", raw)),
        "tiff": open_stack(tmp_path / "s.tif"),
        "dask": da.from_array(raw, chunks=(2, 40, 36)),
        "numpy": raw,
    }
    for name, frames in sources.items():
        out = tmp_path / f"{name}.zarr"
        result = run_to_end(register_stack_to_store(model, frames, reference, out, batch_size=3))
        got = stored(out)
        np.testing.assert_allclose(got["fields/0"], expected, atol=1e-4, err_msg=name)
        assert result.written == 7 and got["done"].all()
        assert np.isfinite(got["metrics"]).all()


def test_a_stopped_run_resumed_equals_an_uninterrupted_one(model, raw, tmp_path, single_thread):
    whole = tmp_path / "whole.zarr"
    run_to_end(register_stack_to_store(model, raw, "previous", whole, batch_size=2))
    cut = tmp_path / "cut.zarr"
    job = register_stack_to_store(model, raw, "previous", cut, batch_size=2)
    while "frame" not in next(job).what or len(stored(cut)["done"].nonzero()[0]) < 3:
        pass
    job.close()  # the run dies after frame 2 is written
    root = zarr.open_group(str(cut), mode="r+")
    root["0"][4] = 7.0  # frame 4 half-written: its image but no done mark
    done_before = root["done"][:].copy()
    assert done_before.sum() == 3 and not done_before[4]
    result = run_to_end(register_stack_to_store(model, raw, "previous", cut, resume=True))
    assert (result.skipped, result.written) == (3, 4)
    a, b = stored(whole), stored(cut)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-5, err_msg=name)


def test_the_cluster_path_gives_the_single_process_fields(model, raw, tmp_path, single_thread):
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = tmp_path / "c.zarr"
        job = register_stack_to_store(model, raw, "previous", out, cluster=client, batch_size=1)
        result = run_to_end(job)
    assert result.written == 7 and result.pairs == 6
    expected = in_memory(model, raw, "previous")
    # two workers in one process may split the convolutions differently: the fields agree
    # to well under a thousandth of a pixel (4e-4 seen), far below the displacements
    assert np.abs(expected).max() > 0.05
    np.testing.assert_allclose(stored(out)["fields/0"], expected, atol=2e-3)


@pytest.mark.slow
def test_a_killed_workers_frames_are_retried_once_and_written_once(model, tmp_path):
    raw = (np.random.default_rng(2).random((16, 128, 128)) * 255).astype(np.float32)
    log = tmp_path / "starts.log"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.register_plugin(StartLog(log, pause=0.2))
        pids = client.run(os.getpid)
        out = tmp_path / "k.zarr"
        job = register_stack_to_store(model, raw, 0, out, cluster=client, batch_size=2)
        killed, assigned = None, []

        def kill_halfway(event):
            nonlocal killed
            if killed is None and event.done >= 3:
                client.amm.run_once()  # Dask's memory manager drops extra copies of data
            held = client.has_what()
            busy = [(w, keys) for w, keys in client.processing().items() if keys]
            # the model's own key is the one that is not a batch: kill its last holder
            busy.sort(key=lambda wk: all(str(k).startswith("pair_fields") for k in held[wk[0]]))
            if killed is None and event.done >= 3 and busy:
                killed, keys = busy[0]  # frames in its hands (and the model, if it has it)
                assigned.extend(str(k) for k in keys)
                os.kill(pids[killed], signal.SIGKILL)

        result = run_to_end(job, kill_halfway)
    starts = [line.split() for line in log.read_text().splitlines()]
    runs = {key: [w for w, k in starts if k == key] for key in assigned}
    assert assigned and all(len(workers) <= 2 for workers in runs.values())
    assert any(workers and workers[-1] != killed for workers in runs.values()), (killed, runs)
    assert result.written == 16 and result.skipped == 0  # every frame written, each once
    got = stored(out)
    assert got["done"].all()
    np.testing.assert_allclose(got["fields/0"], in_memory(model, raw, 0), atol=1e-4)
