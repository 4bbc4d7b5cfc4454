"""The transferable part of the rotor proposals: :class:`RotorNetwork`.

It maps each internal coordinate of a molecule to its parameters (a rotor's spline; another
coordinate's mean and log width, the width setting the walk's step) from features of the
coordinate's atoms (``openmm_timewarp.proposals.rotors.features``): the atom name (the
``peptide-atom`` vocabulary; a name absent from the training set contributes nothing), element,
bonded heavy atoms and hydrogens, ring membership, and the set of atom names of its residue (which
tells residues apart without a residue vocabulary). A transferable model file holds the scripted
network (:func:`save_network`); ``openmm_timewarp.models.resolve`` builds a molecule's proposal
from it.
"""

import os
from pathlib import Path

import torch
from torch import nn

from openmm_timewarp.models.files import save_transferable_network
from openmm_timewarp.models.metadata import ModelMetadata
from openmm_timewarp.proposals.ic.splines import num_spline_parameters
from openmm_timewarp.proposals.rotors.features import FAMILY, GRAPH_FEATURES, MoleculeFeatures


def output_network(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two SiLU hidden layers, the output layer at zero: a fresh network gives the untrained
    default (uniform rotors and backbone angles, the initial widths)."""
    network = nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.SiLU(),
        nn.Linear(hidden, hidden),
        nn.SiLU(),
        nn.Linear(hidden, outputs),
    )
    nn.init.zeros_(network[-1].weight)
    nn.init.zeros_(network[-1].bias)
    return network


class ResidueEmbedding(nn.Linear):
    """A residue's embedding from the set of its atom names (``names [..., V]``, 0/1): a linear
    layer and SiLU, the names not seen in training (``known`` 0) left out."""

    def forward(self, names: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        linear = torch.nn.functional.linear(names * known, self.weight, self.bias)
        return torch.nn.functional.silu(linear)


class RotorNetwork(nn.Module):
    """Parameters of every internal coordinate of a molecule from the types of its atoms.

    ``forward`` returns ``[M, 3K + 3]``: a circular spline's ``3K + 1`` raw parameters, then the
    mean and log width (columns ``-2`` and ``-1``). Rotors use the spline; the other kinds the mean
    and width. ``known_names`` marks the atom names seen in training: other names contribute no
    embedding, so the network falls back on element and bonding for them.
    """

    num_bins: int

    def __init__(
        self, vocabulary_size: int, hidden: int = 128, num_bins: int = 16, atom_dim: int = 32
    ) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.register_buffer("known_names", torch.zeros(vocabulary_size, dtype=torch.bool))
        self.name_embedding = nn.Embedding(vocabulary_size, atom_dim)
        self.atom = nn.Linear(atom_dim + GRAPH_FEATURES, atom_dim)
        self.residue = ResidueEmbedding(vocabulary_size, atom_dim)
        inputs = 4 + 4 * atom_dim + 2 * atom_dim
        self.net = output_network(inputs, hidden, num_spline_parameters(num_bins) + 2)

    def forward(
        self,
        names: torch.Tensor,
        graph: torch.Tensor,
        residue_names: torch.Tensor,
        coordinate_atoms: torch.Tensor,
        coordinate_kinds: torch.Tensor,
    ) -> torch.Tensor:
        known = self.known_names[names].unsqueeze(-1).to(graph.dtype)
        atom = self.atom(torch.cat([self.name_embedding(names) * known, graph], dim=-1))
        atom = torch.cat([torch.nn.functional.silu(atom), torch.zeros_like(atom[:1])])
        padded = torch.where(coordinate_atoms < 0, atom.shape[0] - 1, coordinate_atoms)
        residue = self.residue(residue_names, self.known_names.to(graph.dtype))
        second = coordinate_atoms[:, 1]
        third = torch.where(coordinate_atoms[:, 2] < 0, second, coordinate_atoms[:, 2])
        features = torch.cat(
            [
                torch.nn.functional.one_hot(coordinate_kinds, 4).to(graph.dtype),
                atom[padded].reshape(coordinate_atoms.shape[0], -1),
                residue[second],
                residue[third],
            ],
            dim=-1,
        )
        return self.net(features)


def molecule_parameters(network: torch.nn.Module, features: MoleculeFeatures) -> torch.Tensor:
    """``network``'s parameters ``[M, 3K + 3]`` of every internal coordinate of one molecule."""
    return network(
        features.names,
        features.graph,
        features.residue_names,
        features.coordinate_atoms,
        features.coordinate_kinds,
    )


def save_network(network: RotorNetwork, path: str | os.PathLike, metadata: ModelMetadata) -> Path:
    """Write a transferable ``ic-rotor`` model file: the scripted network with its metadata."""
    return save_transferable_network(network, path, metadata, FAMILY)
