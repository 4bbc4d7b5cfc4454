"""The proposal-model contract's public names in one import (docs/contract.md).

A proposal model is a TorchScript module with the attributes ``noise_dim``, ``tau``,
``num_atoms`` and ``num_atom_types``, a ``forward(positions, atom_types, noise) ->
(proposals, logQRatio)`` and its many-chain form ``forward_chains``; its metadata travel inside
the file as ``timewarp.json``. Each concern has its own module, which the package itself imports:

- ``models.metadata``: :class:`ModelMetadata`, atom-type codes and chiral centres of a Topology;
- ``models.files``: writing (:func:`export`, :func:`save_module`, :func:`resave`) and reading
  model files, with their checksums;
- ``models.checks``: :func:`check_contract` and the checks it runs;
- ``models.resolve``: bundled names and paths to files, transferable models built per molecule;
- ``proposals.base``: :class:`ChainBatchedProposal`, the base of batched proposal modules.

This module gathers them for scripts and user code that import from one place.
"""

from openmm_timewarp.models.checks import (
    check_contract,
    check_forward_chains,
    check_independence,
    has_forward_chains,
)
from openmm_timewarp.models.files import CHECKSUM_FILE, export, resave, save_module, verify_checksum
from openmm_timewarp.models.metadata import (
    ATOM_TYPE_SCHEMES,
    FORMAT_VERSION,
    METADATA_FILE,
    MODEL_FAMILIES,
    PEPTIDE_RESIDUES,
    ModelMetadata,
    atom_types_for_topology,
    chiral_centres,
    residue_atom_label,
)
from openmm_timewarp.models.resolve import (
    BUNDLED_MODEL_DIR,
    bundled_models,
    load_metadata,
    load_model,
    resolve_model_path,
)
from openmm_timewarp.proposals.base import ChainBatchedProposal

__all__ = [
    "ATOM_TYPE_SCHEMES",
    "BUNDLED_MODEL_DIR",
    "CHECKSUM_FILE",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "MODEL_FAMILIES",
    "PEPTIDE_RESIDUES",
    "ChainBatchedProposal",
    "ModelMetadata",
    "atom_types_for_topology",
    "bundled_models",
    "check_contract",
    "check_forward_chains",
    "check_independence",
    "chiral_centres",
    "residue_atom_label",
    "export",
    "has_forward_chains",
    "load_metadata",
    "load_model",
    "resave",
    "resolve_model_path",
    "save_module",
    "verify_checksum",
]
