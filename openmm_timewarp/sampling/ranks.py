"""How chains spread over processes: each process's rank, its chains, its device, their seeds.

:func:`process_rank` reads torchrun's ``RANK``/``WORLD_SIZE``, a SLURM job array's task id and
count, or SLURM's ``PROCID``/``NTASKS``; chain i runs on rank ``i mod W`` (:func:`chains_for_rank`)
with the proposal model on ``cuda:LOCAL_RANK`` when CUDA is available (:func:`model_device`). A
chain's seed depends on its index only (:func:`chain_seed`), so the same chains come out whatever
the number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np
import torch

__all__ = ["chain_seed", "chains_for_rank", "model_device", "process_rank"]

Chain = TypeVar("Chain")


def chain_seed(seed: int, index: int) -> int:
    """The seed of chain ``index`` of a run with base ``seed``: independent streams per chain,
    the same whatever rank runs the chain."""
    words = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 ^ int(words[1])


def process_rank(environment: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(rank, world size)`` of this process, from torchrun (``RANK``, ``WORLD_SIZE``), a SLURM
    job array (``SLURM_ARRAY_TASK_ID`` counted from ``SLURM_ARRAY_TASK_MIN``,
    ``SLURM_ARRAY_TASK_COUNT``) or SLURM tasks (``SLURM_PROCID``, ``SLURM_NTASKS``); ``(0, 1)``
    outside any launcher."""
    env = os.environ if environment is None else environment
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        rank, world = int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    else:
        rank, world = 0, 1
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"rank {rank} of {world} processes is impossible; check the launcher's environment "
            "(RANK/WORLD_SIZE, SLURM_ARRAY_TASK_ID/COUNT or SLURM_PROCID/NTASKS)"
        )
    return rank, world


def chains_for_rank(chains: Sequence[Chain], rank: int, world_size: int) -> list[Chain]:
    """The chains that rank ``rank`` of ``world_size`` runs: chain i goes to rank i mod W."""
    return list(chains[rank::world_size])


def model_device(environment: Mapping[str, str] | None = None) -> torch.device:
    """``cuda:LOCAL_RANK`` (torchrun; ``SLURM_LOCALID`` under srun) when CUDA is available,
    else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    env = os.environ if environment is None else environment
    local_rank = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0")))
    return torch.device("cuda", local_rank % torch.cuda.device_count())
