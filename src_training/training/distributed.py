"""Multi-process training under ``torchrun``: NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Place of this process in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment.

    Parameters
    ----------
    device : torch.device
        The device asked for; on CUDA each process takes ``cuda:LOCAL_RANK``.

    Returns
    -------
    tuple
        The context and this process's device.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(rank, world_size, local_rank), device


def shutdown_distributed(wait_for_all: bool = True) -> None:
    """Leave the process group, if one was joined.

    Parameters
    ----------
    wait_for_all : bool
        Meet the other ranks at a barrier first: a rank tearing gloo down while another
        still finishes its run can abort the other. Pass False after an error, when the
        other ranks may never arrive.
    """
    if dist.is_available() and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()
