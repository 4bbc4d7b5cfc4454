"""The proposal families that ``timewarp train`` fits: how each is built, described and exported.

One :class:`FamilySpec` per family in :data:`FAMILIES`; training code looks a family up here
instead of branching on its name. A spec's functions take the training folder's record (its
``recipe``, ``facts`` and ``name``, docs/training.md), so a family added here trains, resumes and
exports through the same code as the others. The proposal modules are imported when a spec is
used, so that reading the registry costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from openmm import app

from openmm_timewarp.models.contract import ModelMetadata, atom_types_for_topology, export

#: A trainable model, the type codes of the (first) molecule's atoms, and the metadata whose
#: vocabulary types every molecule's atoms (None: the atoms are numbered in the model's order).
Built = tuple[torch.nn.Module, torch.Tensor, ModelMetadata | None]


@dataclass(frozen=True)
class FamilySpec:
    """How one proposal family is trained and exported."""

    #: Trains one model on several molecules (one data folder each).
    transferable: bool
    #: Trained on frames rather than pairs (x(t), x(t + tau)): an independence proposal.
    trains_on_frames: bool
    #: The ``timewarp train`` options that size the model, stored as the recipe's architecture.
    architecture_options: tuple[str, ...]
    #: ``build(record, topology, data, peptide_topologies)``: the model with untrained
    #: parameters, drawn from torch's generator (the caller seeds it).
    build: Callable[[dict, app.Topology, dict, list[app.Topology]], Built]
    #: ``metadata(model, record, topology, training)``: the exported file's metadata.
    metadata: Callable[[torch.nn.Module, dict, app.Topology, dict], ModelMetadata]
    #: ``export(proposal(model), path, metadata, example_positions)``: write the model file.
    export: Callable[[torch.nn.Module, Path, ModelMetadata, torch.Tensor], None]
    #: The module inside the trained one that is exported (and fine-tuned through the contract's
    #: ``forward``); the trained module itself unless it wraps one for training.
    proposal: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model


def transferable_metadata(record: dict, family: str) -> ModelMetadata:
    """Metadata of a model trained on several molecules: ``peptide-atom`` vocabulary, any size."""
    from openmm_timewarp.data.peptides import peptide_atom_vocabulary

    return ModelMetadata(
        name=record["name"],
        family=family,
        tau_ps=record["recipe"]["tau_ps"],
        temperature_K=record["facts"]["temperature_K"],
        forcefield=record["facts"]["forcefield"],
        atom_type_scheme="peptide-atom",
        atom_types=list(peptide_atom_vocabulary()),
        num_atoms=None,
    )


def flow_metadata(topology: app.Topology, record: dict) -> ModelMetadata:
    """Metadata of a Timewarp flow trained here: element vocabulary of the data's molecule, or
    for several molecules the residue-independent ``peptide-atom`` vocabulary and any size."""
    recipe, facts = record["recipe"], record["facts"]
    if isinstance(recipe["data"], list):
        return transferable_metadata(record, "timewarp-flow")
    return ModelMetadata.for_molecule(
        topology,
        name=record["name"],
        family="timewarp-flow",
        tau_ps=recipe["tau_ps"],
        temperature_K=facts["temperature_K"],
        forcefield=facts["forcefield"],
        atom_type_scheme="element",
    )


def _build_flow(
    record: dict, topology: app.Topology, data: dict, peptide_topologies: list[app.Topology]
) -> Built:
    from openmm_timewarp.proposals.cartesian import TimewarpProposal, preset
    from openmm_timewarp.proposals.cartesian.augment import RotationAugmented

    recipe = record["recipe"]
    metadata = flow_metadata(topology, record)
    atom_types = torch.from_numpy(atom_types_for_topology(topology, metadata))
    config = preset(recipe["architecture"]["preset"], len(metadata.atom_types))
    model = RotationAugmented(TimewarpProposal(config), recipe["settings"]["seed"])
    return model, atom_types, metadata


def _build_rotor(
    record: dict, topology: app.Topology, data: dict, peptide_topologies: list[app.Topology]
) -> Built:
    from openmm_timewarp.proposals.rotors.network import RotorNetwork
    from openmm_timewarp.proposals.rotors.training import RotorTrainingModel

    metadata = transferable_metadata(record, "ic-rotor")
    atom_types = torch.from_numpy(atom_types_for_topology(topology, metadata))
    network = RotorNetwork(len(metadata.atom_types), **record["recipe"]["architecture"])
    return RotorTrainingModel(network, peptide_topologies), atom_types, metadata


def _build_backbone(
    record: dict, topology: app.Topology, data: dict, peptide_topologies: list[app.Topology]
) -> Built:
    from openmm_timewarp.proposals.backbone.network import BackboneNetwork
    from openmm_timewarp.proposals.backbone.training import BackboneTrainingModel

    metadata = transferable_metadata(record, "ic-backbone")
    atom_types = torch.from_numpy(atom_types_for_topology(topology, metadata))
    network = BackboneNetwork(len(metadata.atom_types), **record["recipe"]["architecture"])
    return BackboneTrainingModel(network, peptide_topologies), atom_types, metadata


def _build_ic(
    record: dict, topology: app.Topology, data: dict, peptide_topologies: list[app.Topology]
) -> Built:
    from openmm_timewarp.proposals.ic.families import proposal_for_frames

    recipe = record["recipe"]
    model = proposal_for_frames(
        recipe["family"],
        topology,
        data["train"][1],
        seed=recipe["settings"]["seed"],
        **recipe["architecture"],
    )
    return model, torch.arange(topology.getNumAtoms()), None


def _ic_metadata(
    model: torch.nn.Module, record: dict, topology: app.Topology, training: dict
) -> ModelMetadata:
    from openmm_timewarp.proposals.ic.families import proposal_metadata

    facts = record["facts"]
    return proposal_metadata(
        model,
        record["name"],
        record["recipe"]["tau_ps"],
        facts["temperature_K"],
        facts["forcefield"],
        training,
    )


def _export_contract(
    proposal: torch.nn.Module, path: Path, metadata: ModelMetadata, example: torch.Tensor
) -> None:
    export(proposal, path, metadata, example_positions=example)


def _export_network(
    model: torch.nn.Module, path: Path, metadata: ModelMetadata, example: torch.Tensor
) -> None:
    from openmm_timewarp.models.files import save_transferable_network

    save_transferable_network(model.network, path, metadata, metadata.family)


def _ic_spec(trains_on_frames: bool) -> FamilySpec:
    """An internal-coordinate spline flow of one molecule (``proposals.ic.families``)."""
    return FamilySpec(
        transferable=False,
        trains_on_frames=trains_on_frames,
        architecture_options=("num_couplings", "hidden", "num_bins"),
        build=_build_ic,
        metadata=_ic_metadata,
        export=_export_contract,
    )


#: Every family that ``timewarp train`` fits, in the order its ``--help`` lists them.
FAMILIES: dict[str, FamilySpec] = {
    "ic-independent": _ic_spec(trains_on_frames=True),
    "ic-conditional": _ic_spec(trains_on_frames=False),
    "timewarp-flow": FamilySpec(
        transferable=True,
        trains_on_frames=False,
        architecture_options=("preset",),
        build=_build_flow,
        metadata=lambda model, record, topology, training: replace(
            flow_metadata(topology, record), training=training
        ),
        export=_export_contract,
        proposal=lambda model: model.flow,
    ),
    "ic-rotor": FamilySpec(
        transferable=True,
        trains_on_frames=True,
        architecture_options=("hidden", "num_bins"),
        build=_build_rotor,
        metadata=lambda model, record, topology, training: replace(
            transferable_metadata(record, "ic-rotor"), training=training
        ),
        export=_export_network,
    ),
    "ic-backbone": FamilySpec(
        transferable=True,
        trains_on_frames=True,
        architecture_options=("hidden", "num_bins"),
        build=_build_backbone,
        metadata=lambda model, record, topology, training: replace(
            transferable_metadata(record, "ic-backbone"), training=training
        ),
        export=_export_network,
    ),
}


def family_spec(family: str) -> FamilySpec:
    """The spec of ``family``; ValueError naming the trainable families otherwise."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(
            f"unknown trainable family {family!r}; expected one of {tuple(FAMILIES)}"
        ) from None
