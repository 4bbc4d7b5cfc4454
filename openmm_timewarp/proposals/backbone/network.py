"""The transferable part of the joint-backbone proposals: :class:`BackboneNetwork`.

A :class:`~openmm_timewarp.proposals.rotors.network.RotorNetwork` gives every internal coordinate
its parameters (side-chain and other rotors' splines, the other coordinates' widths); a residue
head gives each residue's ``G x G`` (phi, psi) logits from the atom-name sets of the residue and of
its neighbours before and after it (caps and termini included, zeros where absent; names unseen in
training contribute nothing). A transferable model file holds the scripted network
(:func:`save_network`); ``openmm_timewarp.models.resolve`` builds a molecule's proposal from it.
"""

import os
from pathlib import Path

import torch
from torch import nn

from openmm_timewarp.models.files import save_transferable_network
from openmm_timewarp.models.metadata import ModelMetadata
from openmm_timewarp.proposals.rotors.features import MoleculeFeatures
from openmm_timewarp.proposals.rotors.network import (
    ResidueEmbedding,
    RotorNetwork,
    output_network,
)

FAMILY = "ic-backbone"
DEFAULT_GRID = 24


class BackboneNetwork(nn.Module):
    """Coordinate parameters ``[M, 3K + 3]`` (as RotorNetwork's) and residue logits
    ``[E, grid * grid]`` (phi bin major) of one molecule. The logits start at zero: a fresh
    network proposes uniform backbone angles."""

    grid: int

    def __init__(
        self,
        vocabulary_size: int,
        hidden: int = 128,
        num_bins: int = 16,
        atom_dim: int = 32,
        grid: int = DEFAULT_GRID,
    ) -> None:
        super().__init__()
        self.grid = grid
        self.rotors = RotorNetwork(vocabulary_size, hidden, num_bins, atom_dim)
        self.residue = ResidueEmbedding(vocabulary_size, atom_dim)
        self.head = output_network(3 * atom_dim, hidden, grid * grid)

    def forward(
        self,
        names: torch.Tensor,
        graph: torch.Tensor,
        residue_names: torch.Tensor,
        coordinate_atoms: torch.Tensor,
        coordinate_kinds: torch.Tensor,
        residue_context: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parameters = self.rotors(names, graph, residue_names, coordinate_atoms, coordinate_kinds)
        known = self.rotors.known_names.to(residue_context.dtype)
        present = (residue_context.sum(-1, keepdim=True) > 0).to(residue_context.dtype)
        # An absent neighbour stays all zeros, not the layer's bias.
        residues = self.residue(residue_context, known) * present
        logits = self.head(residues.reshape(residues.shape[0], -1))
        return parameters, logits


def molecule_outputs(
    network: torch.nn.Module, features: MoleculeFeatures, context: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``network``'s coordinate parameters and residue logits for one molecule."""
    return network(
        features.names,
        features.graph,
        features.residue_names,
        features.coordinate_atoms,
        features.coordinate_kinds,
        context,
    )


def save_network(
    network: BackboneNetwork, path: str | os.PathLike, metadata: ModelMetadata
) -> Path:
    """Write a transferable ``ic-backbone`` model file: the scripted network with its metadata."""
    return save_transferable_network(network, path, metadata, FAMILY)
