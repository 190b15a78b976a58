"""Data-parallel runs under torchrun: joining the process group, sharding photos, and gathering results.

Started by ``torchrun --nproc_per_node N -m napari_gfn label ...``, every
process runs the same engine. Training is wrapped in DistributedDataParallel,
prediction is sharded by photo, and rank 0 alone writes the run's records.
Outside torchrun every helper here is a no-op for one process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "barrier",
    "gather_dicts",
    "is_main",
    "join_process_group",
    "leave_process_group",
    "rank",
    "shard",
    "world_size",
]

T = TypeVar("T")


def join_process_group(device_name: str) -> None:
    """Join torchrun's process group: NCCL on GPUs, gloo on the CPU. Nothing happens outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" then means this rank's GPU
    dist.init_process_group("nccl" if use_cuda else "gloo")


def leave_process_group() -> None:
    """Wait for every rank, then shut the group down: a rank that exits with gloo's threads still
    running aborts ("terminate called without an active exception") and torchrun fails the job."""
    if _active():
        dist.barrier()
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """Rank 0 writes run.json, metrics.jsonl and checkpoints, and reports progress."""
    return rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every item goes to exactly one rank."""
    return list(items[rank() :: world_size()])


def gather_dicts(shares: Mapping[str, T]) -> dict[str, T]:
    """The union of every rank's dictionary, on every rank (each key comes from one rank)."""
    if not _active():
        return dict(shares)
    everyone: list[dict] = [{} for _ in range(world_size())]
    dist.all_gather_object(everyone, dict(shares))
    return {key: value for share in everyone for key, value in share.items()}
