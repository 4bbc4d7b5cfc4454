"""The base class of proposal modules that compute many chains at once (docs/contract.md)."""

import torch


class ChainBatchedProposal(torch.nn.Module):
    """Base of proposal models whose ``forward`` is the one-chain case of ``forward_chains``.

    Subclasses define ``forward_chains(positions [C, N, 3], atom_types [N], noise [C, B, N, d])``
    (docs/contract.md); ``forward`` then needs no second implementation.
    """

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals, log_q_ratio = self.forward_chains(
            positions.unsqueeze(0), atom_types, noise.unsqueeze(0)
        )
        return proposals[0], log_q_ratio[0]
