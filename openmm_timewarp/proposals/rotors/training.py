"""The rotor network wrapped for maximum-likelihood training on several peptides at once."""

from collections.abc import Sequence
from typing import TypeVar

import torch
from openmm import app
from torch import nn

from openmm_timewarp.data.peptides import peptide_atom_vocabulary
from openmm_timewarp.proposals.ic.zmatrix import InternalCoordinateTransform, build_zmatrix
from openmm_timewarp.proposals.rotors.densities import non_rotor_log_density, rotor_log_density
from openmm_timewarp.proposals.rotors.features import (
    ROTOR,
    MoleculeFeatures,
    molecule_features,
)
from openmm_timewarp.proposals.rotors.network import RotorNetwork, molecule_parameters

Molecule = TypeVar("Molecule")


def molecule_for(molecules: dict[tuple[int, ...], Molecule], atom_types: torch.Tensor) -> Molecule:
    """The entry of ``molecules`` (keyed by their ``peptide-atom`` codes) whose codes
    ``atom_types`` are; ValueError if none."""
    key = tuple(atom_types.tolist())
    if key not in molecules:
        raise ValueError("atom_types are those of no molecule this model was built with")
    return molecules[key]


class RotorTrainingModel(nn.Module):
    """:class:`RotorNetwork` with the molecules it is trained on, for ``training.train_peptides``.

    ``training_nll(x_cond, x_next, atom_types)`` is ``-log`` of the rotor densities and of the
    Gaussian widths of the other coordinates of the frames ``x_next`` (``x_cond`` is ignored); the
    molecule is the one whose ``peptide-atom`` codes ``atom_types`` are.
    """

    def __init__(self, network: RotorNetwork, topologies: Sequence[app.Topology]) -> None:
        super().__init__()
        self.network = network
        self.molecules: dict[tuple[int, ...], tuple[MoleculeFeatures, nn.Module]] = {}
        self.transforms = nn.ModuleList()
        vocabulary = peptide_atom_vocabulary()
        for topology in topologies:
            zmatrix = build_zmatrix(topology)
            features = molecule_features(topology, zmatrix, vocabulary)
            network.known_names[features.names] = True
            transform = InternalCoordinateTransform(zmatrix)
            self.transforms.append(transform)
            self.molecules[tuple(features.names.tolist())] = (features, transform)

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        features, transform = molecule_for(self.molecules, atom_types)
        q, _, _ = transform.to_internal(x_next.double())
        q = q.float()
        parameters = molecule_parameters(self.network, features)
        rotor = features.coordinate_kinds == ROTOR
        spline = parameters[rotor, :-2]
        log_q = rotor_log_density(q[:, rotor], spline).sum(-1)
        log_q = log_q + non_rotor_log_density(
            q[:, ~rotor], features.coordinate_kinds[~rotor], parameters[~rotor]
        ).sum(-1)
        return -log_q
