"""Rotation augmentation of a Timewarp flow for training (the flow is not rotation equivariant)."""

from __future__ import annotations

import torch


class RotationAugmented(torch.nn.Module):
    """Training view of a Timewarp flow: each pair turned by a uniform random rotation.

    The flow is not rotation equivariant, so it learns orientations from the data. The rotation
    and the flow's own auxiliary draw of training call k come from torch's generator seeded with
    (seed, k), and k is a buffer of the state dict, so a run resumed from a checkpoint draws the
    same numbers as one that was not interrupted; validation draws from a fixed seed. Under
    torchrun each process has its own stream (seeded with its rank as well).
    """

    def __init__(self, flow: torch.nn.Module, seed: int) -> None:
        super().__init__()
        self.flow = flow
        self.seed = seed
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            if not self.training:
                torch.manual_seed(self.seed)
                return self.flow.training_nll(x_cond, x_next, atom_types)
            seed = self.seed * 1_000_003 + int(self.calls)
            if torch.distributed.is_initialized() and torch.distributed.get_rank() > 0:
                # Process r > 0 of a torchrun launch: its own rotations and auxiliary noise
                # (torch's CPU generator keeps only 32 bits of a seed, hence the hashing).
                from numpy.random import SeedSequence

                rank = torch.distributed.get_rank()
                seed = int(SeedSequence([seed, rank]).generate_state(1)[0])
            torch.manual_seed(seed)
            self.calls += 1
            rotation = random_rotations(x_cond.shape[0])
            return self.flow.training_nll(x_cond @ rotation, x_next @ rotation, atom_types)


def random_rotations(count: int) -> torch.Tensor:
    """``count`` uniform random rotation matrices ``[count, 3, 3]`` from torch's generator."""
    w, x, y, z = torch.nn.functional.normalize(torch.randn(count, 4), dim=1).unbind(1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], 1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], 1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1),
        ],
        1,
    )
