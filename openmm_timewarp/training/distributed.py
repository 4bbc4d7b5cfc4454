"""Training under ``torchrun``: the process group, process 0's work, each process's batches.

Launched by ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1 in the environment), training runs
as ``torch.nn.parallel.DistributedDataParallel`` on ``cuda:LOCAL_RANK`` (NCCL) or on the CPU
(gloo). Outside such a launch every function here is the one-process case.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a ``torchrun`` launch."""

    rank: int
    world_size: int
    device: torch.device


@contextlib.contextmanager
def distributed_process_group() -> Iterator[ProcessGroup | None]:
    """Join the process group of a ``torchrun`` launch (``WORLD_SIZE`` > 1); else yield None.

    Initialises it (NCCL on ``cuda:LOCAL_RANK`` when CUDA is available, gloo on the CPU
    otherwise) and destroys it on exit, unless it was already initialised by the caller.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield None
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if dist.is_initialized():
        yield ProcessGroup(dist.get_rank(), dist.get_world_size(), device)
        return
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield ProcessGroup(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True outside a ``torchrun`` launch and on its process 0."""
    return not dist.is_initialized() or dist.get_rank() == 0


def batch_size_per_process(batch_size: int) -> int:
    """Each process's share of the batch; ValueError unless the processes divide it evenly."""
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {world_size} processes: "
            "choose a batch size that is a multiple of --nproc_per_node"
        )
    return batch_size // world_size


def on_main_process(prepare: Callable[[], T]) -> T:
    """Run ``prepare`` on process 0 alone and return its result in every process.

    For work that must happen once (writing a training folder). When it raises, process 0
    raises that error and the others a ValueError with its message, so that none waits for the
    others forever. Outside a distributed run it is ``prepare()``.
    """
    if not dist.is_initialized():
        return prepare()
    result, failure = None, None
    if dist.get_rank() == 0:
        try:
            result = prepare()
        except Exception as raised:
            failure = raised
    box = [(result, None if failure is None else f"process 0 failed: {failure}")]
    dist.broadcast_object_list(box, src=0)
    result, error = box[0]
    if failure is not None:
        raise failure
    if error is not None:
        raise ValueError(error)
    return result


def from_main(value: T, group: ProcessGroup | None) -> T:
    """``value`` as process 0 has it, in every process (itself outside a distributed run)."""
    if group is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The random stream of one process at one step of a distributed run.

    Seeded from (seed, rank, step) rather than carried along, so that a resumed run draws what
    the uninterrupted one would have without gathering every process's generator state.
    """
    # 32 bits: what torch's CPU generator keeps of a seed.
    entropy = np.random.SeedSequence([seed, rank, step]).generate_state(1)
    return torch.Generator().manual_seed(int(entropy[0]))
