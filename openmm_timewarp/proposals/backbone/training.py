"""The backbone network wrapped for maximum-likelihood training on several peptides at once."""

from collections.abc import Sequence

import torch
from openmm import app
from torch import nn

from openmm_timewarp.data.peptides import peptide_atom_vocabulary
from openmm_timewarp.proposals.backbone.density import density_tables, log_density_at
from openmm_timewarp.proposals.backbone.network import BackboneNetwork
from openmm_timewarp.proposals.backbone.residues import (
    backbone_residues,
    free_angle_rotors,
    register_angle_buffers,
    residue_context,
)
from openmm_timewarp.proposals.ic.zmatrix import (
    InternalCoordinateTransform,
    build_zmatrix,
    torsion_angles,
)
from openmm_timewarp.proposals.rotors.densities import non_rotor_log_density, rotor_log_density
from openmm_timewarp.proposals.rotors.features import ROTOR, molecule_features
from openmm_timewarp.proposals.rotors.training import molecule_for


class _Molecule(nn.Module):
    """What the NLL of one training molecule needs, as buffers so that it follows the model to
    its device: the network's inputs, the residues' angle atoms and flags, the coordinate masks
    and the Z-matrix transform."""

    def __init__(self, topology: app.Topology) -> None:
        super().__init__()
        zmatrix = build_zmatrix(topology)
        features = molecule_features(topology, zmatrix, peptide_atom_vocabulary())
        residues = [r for r in backbone_residues(topology, zmatrix, features) if r.movable]
        for field in ("names", "graph", "residue_names", "coordinate_atoms", "coordinate_kinds"):
            self.register_buffer(field, getattr(features, field).clone())
        self.register_buffer("context", residue_context(topology, residues, features))
        register_angle_buffers(self, residues)
        rotor = features.coordinate_kinds == ROTOR
        rotor[free_angle_rotors(residues)] = False
        self.register_buffer("rotor", rotor)
        self.register_buffer("other", features.coordinate_kinds != ROTOR)
        self.transform = InternalCoordinateTransform(zmatrix)

    def angles(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """True ``(phi, psi) [B, E]`` of frames ``x [B, N, 3]`` (0 where undefined)."""
        phi = torsion_angles(*(x[:, self.phi_atoms[:, i]] for i in range(4)))
        psi = torsion_angles(*(x[:, self.psi_atoms[:, i]] for i in range(4)))
        return torch.where(self.defined_phi, phi, 0.0), torch.where(self.defined_psi, psi, 0.0)


class BackboneTrainingModel(nn.Module):
    """:class:`BackboneNetwork` with the molecules it is trained on, for
    ``training.train_peptides``.

    ``training_nll(x_cond, x_next, atom_types)`` is ``-log`` of the frames ``x_next`` under each
    residue's (phi, psi) density (joint, conditional or marginal as the proposal draws it, with
    no uniform floor), the other rotors' splines and the other coordinates' Gaussian widths
    (``x_cond`` is ignored); the molecule is the one whose ``peptide-atom`` codes ``atom_types``
    are.
    """

    def __init__(self, network: BackboneNetwork, topologies: Sequence[app.Topology]) -> None:
        super().__init__()
        self.network = network
        self.molecule_list = nn.ModuleList()
        self.molecules: dict[tuple[int, ...], _Molecule] = {}
        for topology in topologies:
            molecule = _Molecule(topology)
            network.rotors.known_names[molecule.names] = True
            self.molecule_list.append(molecule)
            self.molecules[tuple(molecule.names.tolist())] = molecule

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        molecule = molecule_for(self.molecules, atom_types)
        x = x_next.double()
        q = molecule.transform.to_internal(x)[0].float()
        parameters, logits = self.network(
            molecule.names,
            molecule.graph,
            molecule.residue_names,
            molecule.coordinate_atoms,
            molecule.coordinate_kinds,
            molecule.context,
        )
        log_density, _ = density_tables(
            logits,
            molecule.free_phi,
            molecule.free_psi,
            molecule.defined_phi,
            molecule.defined_psi,
            uniform_weight=0.0,
        )
        phi, psi = molecule.angles(x)
        log_q = log_density_at(log_density, phi.float(), psi.float()).sum(-1)
        rotor, other = molecule.rotor, molecule.other
        log_q = log_q + rotor_log_density(q[:, rotor], parameters[rotor, :-2]).sum(-1)
        log_q = log_q + non_rotor_log_density(
            q[:, other], molecule.coordinate_kinds[other], parameters[other]
        ).sum(-1)
        return -log_q
