"""Data-parallel training with PyTorch DDP under ``torchrun`` (plumbing, not a model).

    torchrun --standalone --nproc_per_node 2 -m companion train --epochs 5

``torchrun`` starts N copies of the program and gives each ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK`` in its environment (nanoGPT's ``train.py`` detects DDP the same
way). Each copy then joins the process group (NCCL between GPUs, gloo on CPUs) and
trains the same model wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
(which averages the gradients of all copies after every backward pass) on its own
shard of every epoch (:class:`~torch.utils.data.DistributedSampler`, reshuffled per
epoch by :func:`companion.train.fit` through ``set_epoch``). The recipe's batch is
split across the copies, so the global batch, the number of steps and the learning-rate
schedule are those of a single-process run. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .data import MNISTLoaders


class SetupError(ValueError):
    """The torchrun job cannot run as asked (a bad environment, too many processes)."""


@dataclass(frozen=True)
class Process:
    """Where this process stands in a ``torchrun`` job."""

    rank: int  # 0 .. world_size - 1, over all machines
    local_rank: int  # on this machine: which GPU to use
    world_size: int

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0


def from_env(environ=None) -> Process | None:
    """The :class:`Process` torchrun's environment describes; None outside torchrun."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise SetupError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}"
        ) from None
    if not 0 <= rank < world:
        raise SetupError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return Process(rank, local, world)


def setup(process: Process, device: torch.device | None) -> torch.device:
    """Join the process group; returns this process's device.

    ``device`` None: CUDA when available (one GPU per process, ``cuda:LOCAL_RANK``,
    NCCL), else the CPU (gloo). An explicit ``cpu`` uses gloo even on a GPU machine.
    """
    if device is None:
        device = (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        )
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if process.local_rank >= gpus:
            raise SetupError(
                f"LOCAL_RANK={process.local_rank} but this machine has {gpus} CUDA "
                "device(s): start at most that many processes per node"
            )
        device = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise SetupError(
            "data-parallel training runs on CUDA (NCCL) or the CPU (gloo), "
            f"not {device.type}"
        )
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device


def per_process_batch(batch_size: int, process: Process) -> int:
    """This process's share of the global batch (the global batch must split evenly)."""
    if batch_size % process.world_size:
        divisors = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        raise SetupError(
            f"the batch of {batch_size} does not split evenly over "
            f"{process.world_size} processes: use --nproc_per_node in {divisors}"
        )
    return batch_size // process.world_size


def shard(
    loaders: MNISTLoaders, process: Process, batch_size: int, seed: int
) -> MNISTLoaders:
    """``loaders`` with a training loader that gives this process its shard of every
    epoch in batches of ``batch_size // world_size``; validation and test unchanged."""
    sampler = DistributedSampler(
        loaders.train.dataset,
        num_replicas=process.world_size,
        rank=process.rank,
        shuffle=True,
        seed=seed,
    )
    train = DataLoader(
        loaders.train.dataset,
        batch_size=per_process_batch(batch_size, process),
        sampler=sampler,
    )
    info = f"{loaders.info}; data-parallel over {process.world_size} processes"
    return MNISTLoaders(train, loaders.val, loaders.test, info)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (gradients averaged each step)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (call in ``finally``)."""
    if dist.is_initialized():
        dist.destroy_process_group()
