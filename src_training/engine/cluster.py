"""Frame pairs through the network on a Dask cluster, or in this process.

Either way a *runner* takes batches of pairs and gives back each batch with its fields
as it finishes. On a cluster (``dask.distributed``: a ``LocalCluster`` of worker
processes with one thread each, or a scheduler's address) the model is one task of its
own that the batches depend on, at most two batches per worker are in flight (so memory
stays flat in the series' length), and a batch whose worker dies is run again by Dask on
another worker; its result still arrives here once, where it is written. The model is not
scattered: Dask's memory manager drops the extra copies of scattered data, and scattered
data whose last copy dies with its worker cannot be rebuilt, which cancels every batch;
a task that holds the model in its definition is rebuilt wherever it is needed. Requires the
``bigdata`` extra (``dask[distributed]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from src_training.networks.modelio import ModelFile
from src_training.registration.inference import predict

_SPEC = re.compile(r"local(:(\d+))?|tcp://\S+")


@dataclass
class PairBatch:
    """Moving frames and their targets, registered in one forward pass.

    Attributes
    ----------
    moving : list of int
        Frame indices of the moving frames.
    moving_frames, targets : numpy.ndarray
        ``(B, C, *spatial)`` normalised frames and the frames they are registered onto
        (``B = 1`` for one shared reference).
    """

    moving: list[int]
    moving_frames: np.ndarray
    targets: np.ndarray


Runner = Callable[[Iterable[PairBatch]], Iterator[tuple[PairBatch, np.ndarray]]]


def check_cluster(spec: str) -> str:
    """Refuse a ``--cluster`` that is not ``local``, ``local:N`` or ``tcp://ADDRESS``.

    Parameters
    ----------
    spec : str
        The cluster as the user gave it.

    Returns
    -------
    str
        ``spec``, checked.
    """
    match = _SPEC.fullmatch(spec)
    if match is None or match.group(2) == "0":
        raise ValueError(
            f"--cluster must be local, local:N (N worker processes) or tcp://ADDRESS of a "
            f"Dask scheduler, got {spec!r}"
        )
    return spec


def connect(spec: str) -> Any:
    """Start a local Dask cluster or connect to a scheduler.

    Parameters
    ----------
    spec : str
        ``local`` (one worker per CPU core), ``local:N`` (N workers) or ``tcp://ADDRESS``;
        local workers are processes with one thread each.

    Returns
    -------
    distributed.Client
        Close it (and its local cluster) when done.
    """
    from distributed import Client, LocalCluster

    check_cluster(spec)
    if spec.startswith("tcp://"):
        try:
            return Client(spec, timeout="10s")
        except OSError as err:
            raise OSError(
                f"cannot reach the Dask scheduler at {spec} ({err}); start it "
                "(dask scheduler) or check --cluster"
            ) from None
    workers = int(spec.split(":")[1]) if ":" in spec else None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
    client = Client(cluster)
    client.run(torch.set_num_threads, 1)
    return client


def local_runner(model: ModelFile, device: torch.device | str, precision: str) -> Runner:
    """Run every batch here, one after the other (the single-process path).

    Parameters
    ----------
    model : ModelFile
        The registration model.
    device : torch.device or str
        Where the network runs.
    precision : str
        As for :func:`src_training.registration.inference.predict`.

    Returns
    -------
    callable
        The runner.
    """

    def run(batches: Iterable[PairBatch]) -> Iterator[tuple[PairBatch, np.ndarray]]:
        for batch in batches:
            yield batch, pair_fields(model, batch.moving_frames, batch.targets, device, precision)

    return run


def cluster_runner(client: Any, model: ModelFile, precision: str) -> Runner:
    """Map the batches over a Dask client's workers, yielding each as it finishes.

    Parameters
    ----------
    client : distributed.Client
        The cluster's client.
    model : ModelFile
        The registration model, sent with the task that hands it to the batches.
    precision : str
        As for :func:`src_training.registration.inference.predict`.

    Returns
    -------
    callable
        The runner.
    """
    from distributed import as_completed

    def run(batches: Iterable[PairBatch]) -> Iterator[tuple[PairBatch, np.ndarray]]:
        shared = client.submit(_hold, model, pure=False)
        window = 2 * max(1, len(client.scheduler_info()["workers"]))
        pending = iter(batches)
        in_flight: dict[Any, PairBatch] = {}
        finished = as_completed()

        def submit() -> None:
            batch = next(pending, None)
            if batch is not None:
                arrays = (batch.moving_frames, batch.targets)
                future = client.submit(pair_fields, shared, *arrays, "cpu", precision, pure=False)
                in_flight[future] = batch
                finished.add(future)

        for _ in range(window):
            submit()
        for future in finished:
            batch = in_flight.pop(future)
            fields = future.result()
            future.release()
            submit()
            yield batch, fields

    return run


def _hold(model: ModelFile) -> ModelFile:
    return model


def pair_fields(
    model: ModelFile,
    moving: np.ndarray,
    targets: np.ndarray,
    device: torch.device | str,
    precision: str,
) -> np.ndarray:
    """Fields that warp each moving frame onto its target (runs on a worker, or here).

    Parameters
    ----------
    model : ModelFile
        The registration model.
    moving, targets : numpy.ndarray
        ``(B, C, *spatial)`` frames, and their targets (``B`` or 1 of them).
    device : torch.device or str
        Where the network runs.
    precision : str
        As for :func:`src_training.registration.inference.predict`.

    Returns
    -------
    numpy.ndarray
        ``(B, ndim, *spatial)`` float32 displacements in voxels.
    """
    return predict(model.network, moving, targets, device, len(moving), precision).numpy()
