"""The atom transformer: Timewarp's conditioner network.

Each atom carries a feature vector built from its type embedding and per-atom inputs. Atoms
exchange information through a *kernel* self-attention: instead of queries and keys, the attention
weights are RBF kernels of the pairwise distances of the conditioning coordinates, one head per
length scale, normalised over each row. Weights that depend only on distances and types make the
network permutation equivariant; translation invariance follows from distances and centred inputs.
"""

from __future__ import annotations

import torch
from torch import nn


def kernel_attention_weights(
    positions: torch.Tensor, inverse_squared_length_scales: torch.Tensor
) -> torch.Tensor:
    """Row-normalised RBF kernels of pairwise distances.

    Args:
        positions: ``[B, N, 3]`` coordinates (nm).
        inverse_squared_length_scales: ``[H]``, one per head.

    Returns:
        ``[B, H, N, N]`` weights ``exp(-|x_i - x_j|^2 / l^2)`` divided by their sum over ``j``.
    """
    squared_distances = (positions.unsqueeze(-2) - positions.unsqueeze(-3)).square().sum(-1)
    logits = -squared_distances.unsqueeze(1) * inverse_squared_length_scales.view(1, -1, 1, 1)
    return torch.softmax(logits, dim=-1)


class KernelSelfAttention(nn.Module):
    """Multi-head attention with given weights (the RBF kernels), not computed from features."""

    def __init__(self, width: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.value = nn.Linear(width, num_heads * head_dim)
        self.output = nn.Linear(num_heads * head_dim, width)

    def forward(self, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``features [B, N, W]``, ``weights [B or 1, H, N, N]`` -> ``[B, N, W]``."""
        batch, num_atoms, _ = features.shape
        values = self.value(features).view(batch, num_atoms, self.num_heads, self.head_dim)
        if weights.shape[0] == 1:
            # One conditioning state for the whole batch (sampling): one product per head over
            # all batch members, rather than copying the weights for each of them.
            per_head = values.permute(2, 1, 0, 3).reshape(self.num_heads, num_atoms, -1)
            mixed = torch.matmul(weights[0], per_head)
            mixed = mixed.view(self.num_heads, num_atoms, batch, self.head_dim).permute(2, 1, 0, 3)
        else:
            mixed = torch.matmul(weights, values.transpose(1, 2)).transpose(1, 2)
        return self.output(mixed.reshape(batch, num_atoms, -1))


class EncoderLayer(nn.Module):
    """Post-LN transformer encoder layer with kernel self-attention."""

    def __init__(self, width: int, feedforward: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.attention = KernelSelfAttention(width, num_heads, head_dim)
        self.attention_norm = nn.LayerNorm(width)
        self.feedforward = nn.Sequential(
            nn.Linear(width, feedforward), nn.ReLU(), nn.Linear(feedforward, width)
        )
        self.feedforward_norm = nn.LayerNorm(width)

    def forward(self, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        features = self.attention_norm(features + self.attention(features, weights))
        return self.feedforward_norm(features + self.feedforward(features))


class AtomTransformer(nn.Module):
    """Per-atom context, inputs and types -> per-atom outputs, mixing atoms by kernel attention.

    The last linear layer starts at zero, so a fresh flow is the identity on top of its base.
    """

    def __init__(
        self,
        num_atom_types: int,
        atom_embedding_dim: int,
        context_dim: int,
        input_dim: int,
        output_dim: int,
        width: int,
        feedforward: int,
        num_layers: int,
        num_heads: int,
        head_dim: int,
    ) -> None:
        super().__init__()
        # The first layer of the input MLP, split: the part that sees the conditioning (types and
        # per-atom context) is computed once per conditioning state, not once per proposal.
        self.embedding = nn.Embedding(num_atom_types, atom_embedding_dim)
        self.context_projection = nn.Linear(atom_embedding_dim + context_dim, width)
        self.input_projection = nn.Linear(input_dim, width, bias=False)
        self.input_mlp = nn.Sequential(nn.ReLU(), nn.Linear(width, width))
        self.layers = nn.ModuleList(
            [EncoderLayer(width, feedforward, num_heads, head_dim) for _ in range(num_layers)]
        )
        self.output_mlp = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, output_dim)
        )
        nn.init.zeros_(self.output_mlp[-1].weight)
        nn.init.zeros_(self.output_mlp[-1].bias)

    def forward(
        self,
        context: torch.Tensor,
        inputs: torch.Tensor,
        atom_types: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """Per-atom outputs ``[B, N, output_dim]``.

        Args:
            context: ``[B or 1, N, context_dim]`` inputs shared by the batch when its size is 1.
            inputs: ``[B, N, input_dim]`` inputs of each batch member.
            atom_types: ``[B or 1, N]`` type codes.
            weights: ``[B or 1, H, N, N]`` kernel-attention weights.
        """
        batch = max(context.shape[0], atom_types.shape[0])
        embedded = self.embedding(atom_types).expand(batch, -1, -1)
        shared = self.context_projection(torch.cat([embedded, context.expand(batch, -1, -1)], -1))
        features = self.input_mlp(shared + self.input_projection(inputs))
        for layer in self.layers:
            features = layer(features, weights)
        return self.output_mlp(features)
