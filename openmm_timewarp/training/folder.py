"""The ``timewarp train`` folder: the recipe, a snapshot of the data, the model it describes.

A training folder holds ``train.json`` (the recipe that determines the model, facts about the
data, the model's name, the training summary, the CPU time spent), ``data.pt`` (the split data,
so that a resumed run sees the same data while ``timewarp simulate`` keeps adding frames),
``topology.pdb``, and what the training loop writes (checkpoints, ``log.csv``). Families are
looked up in :mod:`openmm_timewarp.models.registry`.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from openmm import app

from openmm_timewarp.checkpoints import load_checkpoint, load_model_state, save_checkpoint
from openmm_timewarp.files import write_atomically, write_json_atomically
from openmm_timewarp.models.registry import family_spec
from openmm_timewarp.training.likelihood import PeptideData, TrainingSettings
from openmm_timewarp.training.loop import BEST_MODEL_FILE

if TYPE_CHECKING:
    from openmm_timewarp.data.chain_data import ChainFolder

TRAIN_RECORD_FILE = "train.json"
TRAIN_DATA_FILE = "data.pt"
TRAIN_TOPOLOGY_FILE = "topology.pdb"
MODEL_FILE = "model.pt"
#: Nominal time per step of an independence proposal (Timewarp's tau), stored in its metadata.
INDEPENDENT_NOMINAL_TAU_PS = 500.0
#: Fraction of a `timewarp sample` chain's committed frames dropped before training on it.
DEFAULT_CHAIN_BURN_IN = 0.1


@dataclass
class TrainingFolder:
    """What a `timewarp train` folder holds, with its model built (untrained parameters)."""

    path: Path
    record: dict  # train.json: recipe, facts, name, summary, cpu_seconds
    topology: app.Topology
    data: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "train" and "validation" pairs
    model: torch.nn.Module  # has training_nll; a flow comes wrapped in RotationAugmented
    atom_types: torch.Tensor  # of the (first) molecule
    peptides: list[PeptideData]  # what training fits: one entry per molecule

    @classmethod
    def open(cls, path: Path) -> TrainingFolder:
        return cls.with_record(
            path, read_json(path / TRAIN_RECORD_FILE, "a `timewarp train` folder")
        )

    @classmethod
    def with_record(cls, path: Path, record: dict) -> TrainingFolder:
        """The folder's data and topology with the model that ``record`` describes."""
        from openmm_timewarp.models.contract import atom_types_for_topology

        recipe = record["recipe"]
        topology = app.PDBFile(str(path / TRAIN_TOPOLOGY_FILE)).topology
        data = load_checkpoint(path / TRAIN_DATA_FILE)
        peptide_topologies = [_pdb_topology(p["topology"]) for p in data.get("peptides", [])]
        torch.manual_seed(recipe["settings"]["seed"])  # initial weights come from this generator
        model, atom_types, metadata = family_spec(recipe["family"]).build(
            record, topology, data, peptide_topologies
        )
        if "peptides" in data:
            peptides = [
                PeptideData(
                    p["train"],
                    p["validation"],
                    torch.from_numpy(atom_types_for_topology(peptide_topology, metadata)),
                    p["name"],
                    p.get("weight"),  # absent in folders written before chains could join
                )
                for p, peptide_topology in zip(data["peptides"], peptide_topologies, strict=True)
            ]
        else:
            peptides = [PeptideData(data["train"], data["validation"], atom_types)]
        return cls(path, record, topology, data, model, atom_types, peptides)

    @property
    def proposal(self) -> torch.nn.Module:
        """The module that is exported, inside the trained model (e.g. a flow's augmentation)."""
        return family_spec(self.record["recipe"]["family"]).proposal(self.model)

    def load_best(self) -> None:
        """Load the best parameters of a finished training into the model."""
        if not (self.path / BEST_MODEL_FILE).is_file() or not self.record["summary"]:
            raise ValueError(f"{self.path} has not finished training: rerun its `timewarp train`")
        best = self.path / BEST_MODEL_FILE
        load_model_state(self.model, load_checkpoint(best), best)

    def save_record(self) -> None:
        write_json_atomically(self.path / TRAIN_RECORD_FILE, self.record, sort_keys=True)

    def export(self, path: Path) -> None:
        """Export the model (best parameters loaded) with the training summary as metadata."""
        recipe, facts = self.record["recipe"], self.record["facts"]
        training = {
            **{key: facts[key] for key in ("data_ns", "frames", "train_pairs", "validation_pairs")},
            **self.record["summary"],
            # Folder names, not this machine's paths: the file travels.
            "data": [Path(d).name for d in recipe["data"]]
            if isinstance(recipe["data"], list)
            else Path(recipe["data"]).name,
            "pairs_tau_ps": recipe["pairs_tau_ps"],
            "architecture": recipe["architecture"],
            "settings": recipe["settings"],
        }
        if "chain_burn_in" in recipe:  # which frames were MD and which came from which chains
            training["chain_burn_in"] = recipe["chain_burn_in"]
            training["sources"] = facts["sources"]
        spec = family_spec(recipe["family"])
        metadata = spec.metadata(self.model, self.record, self.topology, training)
        spec.export(self.proposal, path, metadata, self.peptides[0].validation[1][0])


def _pdb_topology(text: str) -> app.Topology:
    return app.PDBFile(io.StringIO(text)).topology


def make_folder(path: Path) -> None:
    """Create ``path`` and its parents; ValueError naming it if that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create {path}: {error.strerror}") from None


def read_json(path: Path, what: str) -> dict:
    """The JSON record at ``path``; ValueError saying the folder is not ``what`` or is damaged."""
    if not path.is_file():
        raise ValueError(f"{path.parent} is not {what}: it has no {path.name}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is damaged ({error}); use a new output folder") from None


def training_recipe(
    family: str,
    data: list[Path],
    tau_ps: float | None,
    architecture: dict,
    settings: TrainingSettings,
) -> dict:
    """What determines the trained model; a resumed run must be given the same."""
    independent = family_spec(family).trains_on_frames
    return {
        "family": family,
        # One folder as a string, as in earlier versions, so that their trainings resume.
        "data": [str(d.resolve()) for d in data] if len(data) > 1 else str(data[0].resolve()),
        "tau_ps": (tau_ps or INDEPENDENT_NOMINAL_TAU_PS) if independent else tau_ps,
        "pairs_tau_ps": None if independent else tau_ps,
        "architecture": architecture,
        "settings": asdict(settings),
    }


def training_record(output: Path, recipe: dict, data: list[Path], name: str | None) -> dict:
    """The record of the training folder ``output``: read back on a rerun (which must give the
    same ``recipe``), else the folder is started with a snapshot of ``data``."""
    record_path = output / TRAIN_RECORD_FILE
    if record_path.exists():
        record = read_json(record_path, "a `timewarp train` folder")
        if record["recipe"] != recipe:
            changed = sorted(key for key in recipe if record["recipe"].get(key) != recipe[key])
            raise ValueError(
                f"{output} holds a training with other {', '.join(changed)}: rerun with "
                f"the options it was started with ({record_path}) or use a new output folder"
            )
        if name:
            record["name"] = name
        folder = TrainingFolder.with_record(output, record)
        folder.save_record()
        return record
    from openmm_timewarp.data.chain_data import chains_by_molecule, split_data_folders

    md, chains = split_data_folders(data)
    pooled = chains_by_molecule(md, chains)
    created = not output.exists()
    make_folder(output)
    try:
        if len(md) > 1 or recipe["family"] in ("ic-rotor", "ic-backbone"):
            facts = snapshot_peptides(md, recipe, output, pooled)
            name = name or md[0].resolve().parent.name
        else:
            facts = snapshot_training_data(md[0], recipe, output, pooled[md[0]])
            name = name or md[0].resolve().name
        record = {"recipe": recipe, "facts": facts, "name": name, "summary": {}, "cpu_seconds": 0.0}
        # Written once the model could be built, so that a refused option leaves no record.
        folder = TrainingFolder.with_record(output, record)
        folder.save_record()
    except BaseException:
        if created:  # a folder this command made and could not start: leave nothing behind
            shutil.rmtree(output, ignore_errors=True)
        raise
    return record


def snapshot_training_data(
    data: Path, recipe: dict, output: Path, chains: list[ChainFolder] | None = None
) -> dict:
    """Copy the split data and the topology into the training folder; return the data facts.

    Training reads this snapshot, so a resumed run sees the same data while `timewarp simulate`
    keeps adding frames to the data folder.
    """
    from openmm_timewarp.data.datasets import list_trajectories
    from openmm_timewarp.data.md import TOPOLOGY_FILE
    from openmm_timewarp.data.peptides import FORCEFIELD_NAME
    from openmm_timewarp.training.likelihood import load_training_data

    trajectories = list_trajectories(data)
    temperatures = {t.settings.temperature_K for t in trajectories}
    if len(temperatures) != 1:
        raise ValueError(f"{data} mixes temperatures {sorted(temperatures)}; keep one per folder")
    train_pairs, validation_pairs = load_training_data(data, recipe["pairs_tau_ps"])
    train_pairs, validation_pairs, sources = _with_chains(
        train_pairs, validation_pairs, data, trajectories, chains or [], recipe
    )
    save_checkpoint(
        {"train": train_pairs, "validation": validation_pairs}, output / TRAIN_DATA_FILE
    )
    topology_text = (trajectories[0].directory / TOPOLOGY_FILE).read_bytes()
    write_atomically(output / TRAIN_TOPOLOGY_FILE, topology_text)
    facts = {
        "temperature_K": temperatures.pop(),
        "forcefield": FORCEFIELD_NAME,
        "data_ns": sum(t.num_frames * t.frame_interval_ps for t in trajectories) / 1000.0,
        "frames": {t.directory.name: t.num_frames for t in trajectories},
        "train_pairs": len(train_pairs[0]),
        "validation_pairs": len(validation_pairs[0]),
    }
    if "chain_burn_in" in recipe:
        facts["sources"] = {data.resolve().name: sources}
    return facts


def _with_chains(
    train_pairs: tuple[torch.Tensor, torch.Tensor],
    validation_pairs: tuple[torch.Tensor, torch.Tensor],
    md_folder: Path,
    trajectories: list,
    chains: list[ChainFolder],
    recipe: dict,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], dict]:
    """The MD frames of one molecule with its chains' frames appended (frame-trained families:
    the pairs are (frames, frames)); and the record of where the frames came from."""
    sources = {
        "md": {t.directory.name: t.num_frames for t in trajectories},
        "md_folder": md_folder.resolve().name,
        "chains": [],
    }
    if not chains:
        return train_pairs, validation_pairs, sources
    burn_in = recipe["chain_burn_in"]
    pooled = []
    for split, (frames, _) in (("train", train_pairs), ("validation", validation_pairs)):
        chunks = [torch.from_numpy(chain.split(split, burn_in)) for chain in chains]
        frames = torch.cat([frames, *chunks])
        pooled.append((frames, frames))
    sources["chains"] = [chain.source(burn_in) for chain in chains]
    return pooled[0], pooled[1], sources


def snapshot_peptides(
    folders: list[Path],
    recipe: dict,
    output: Path,
    chains: dict[Path, list[ChainFolder]] | None = None,
) -> dict:
    """:func:`snapshot_training_data` for several molecules, one MD data folder each, with the
    chains of each molecule (``chains``, by MD folder) pooled into its frames.

    A molecule is drawn for a training batch with a weight proportional to its MD training
    frames (its chains' frames do not change it), so chains of a few molecules do not tilt the
    model towards those molecules."""
    from openmm_timewarp.data.datasets import list_trajectories
    from openmm_timewarp.data.peptides import FORCEFIELD_NAME
    from openmm_timewarp.training.likelihood import load_training_data

    peptides, facts = [], {"data_ns": 0.0, "frames": {}, "train_pairs": 0, "validation_pairs": 0}
    temperatures, sources = set(), {}
    for folder in folders:
        trajectories = list_trajectories(folder)
        temperatures |= {t.settings.temperature_K for t in trajectories}
        train_pairs, validation_pairs = load_training_data(folder, recipe["pairs_tau_ps"])
        if len(train_pairs[0]) == 0:
            raise ValueError(
                f"{folder} has no committed training frames yet: let `timewarp simulate` write "
                "some, or leave the folder out"
            )
        md_train_frames = len(train_pairs[0])
        train_pairs, validation_pairs, sources[folder.resolve().name] = _with_chains(
            train_pairs, validation_pairs, folder, trajectories, (chains or {}).get(folder, []),
            recipe,
        )  # fmt: skip
        topology = trajectories[0].topology()
        pdb = io.StringIO()
        positions = train_pairs[0][0].double().numpy() * 10.0  # angstroms
        app.PDBFile.writeFile(topology, positions, pdb)
        name = folder.resolve().name
        if name in facts["frames"]:
            raise ValueError(f"two data folders are named {name}: one folder per molecule")
        peptides.append(
            {"name": name, "topology": pdb.getvalue(), "train": train_pairs,
             "validation": validation_pairs, "weight": float(md_train_frames)}
        )  # fmt: skip
        facts["data_ns"] += sum(t.num_frames * t.frame_interval_ps for t in trajectories) / 1e3
        facts["frames"][name] = {t.directory.name: t.num_frames for t in trajectories}
        facts["train_pairs"] += len(train_pairs[0])
        facts["validation_pairs"] += len(validation_pairs[0])
    if len(temperatures) != 1:
        raise ValueError(f"the data folders mix temperatures {sorted(temperatures)}; keep one")
    save_checkpoint({"peptides": peptides}, output / TRAIN_DATA_FILE)
    write_atomically(output / TRAIN_TOPOLOGY_FILE, peptides[0]["topology"])
    if "chain_burn_in" in recipe:
        facts["sources"] = sources
    return {**facts, "temperature_K": temperatures.pop(), "forcefield": FORCEFIELD_NAME}


def export_mixture(
    conditional_path: Path,
    independent_path: Path,
    weight: float,
    name: str | None,
    output: Path,
    model_file: Path | None = None,
) -> Path:
    """Export the exact mixture of a trained ic-conditional and a trained ic-independent (each
    in its `timewarp train` folder), the conditional drawn with probability ``weight``, to
    ``model_file`` (default ``OUTPUT/model.pt``); returns the path written."""
    from openmm_timewarp.models.contract import export
    from openmm_timewarp.proposals.ic.families import ICMixtureProposal, proposal_metadata

    conditional = TrainingFolder.open(conditional_path)
    independent = TrainingFolder.open(independent_path)
    for folder, family in ((conditional, "ic-conditional"), (independent, "ic-independent")):
        if folder.record["recipe"]["family"] != family:
            raise ValueError(
                f"{folder.path} holds an {folder.record['recipe']['family']}, not an {family}"
            )
        folder.load_best()
    facts = conditional.record["facts"]
    if independent.record["facts"]["temperature_K"] != facts["temperature_K"]:
        raise ValueError("the two components were trained at different temperatures")
    mixture = ICMixtureProposal(conditional.model, independent.model, weight)
    training = {"weight": weight}
    for folder in (conditional, independent):
        summary = {**folder.record["summary"], "folder": str(folder.path.resolve())}
        training[folder.record["recipe"]["family"]] = summary
    metadata = proposal_metadata(
        mixture,
        name or conditional.record["name"],
        conditional.record["recipe"]["tau_ps"],
        facts["temperature_K"],
        facts["forcefield"],
        training,
    )
    make_folder(output)
    model_path = model_file or output / MODEL_FILE
    example = conditional.data["validation"][1][0]
    export(mixture, model_path, metadata, example_positions=example)
    return model_path
