"""Frames of ``timewarp sample`` chains as training data, pooled with the MD of the same molecule.

The Metropolis-Hastings chains of an exact sampler are samples of the same equilibrium density as
equilibrium MD of the same System at the same temperature, so the frame-trained families
(ic-independent, ic-rotor, ic-backbone) may learn from both: a chain's frames join the MD frames of
its molecule. Pairs (x(t), x(t + tau)) are another matter: consecutive chain frames are not
dynamics at any lag, so the pair-trained families refuse chains.

What a chain contributes, within each chain folder (``sampling.chain_files``):

- only frames its checkpoint records (the trajectory is flushed before each checkpoint, which is
  replaced atomically), so a chain still running loads safely;
- the first ``burn_in`` fraction of those frames is dropped (the chain starts from a built
  structure, not from equilibrium; ``timewarp train --chain-burn-in``, default 0.1);
- the rest is split by time like MD (80/10/10, :func:`~openmm_timewarp.data.datasets.split_ranges`)
  with a gap of half the validation segment between train and validation.

A chain is refused unless its molecule (residue and atom names in order), its System (the
serialized XML) and its temperature are those of the MD data given for the same sequence.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app

from openmm_timewarp.checkpoints import load_checkpoint
from openmm_timewarp.data.datasets import Trajectory, list_trajectories, split_ranges
from openmm_timewarp.data.dcd import count_dcd_frames
from openmm_timewarp.data.md import RUN_FILE, SYSTEM_FILE
from openmm_timewarp.optional import require
from openmm_timewarp.sampling import chain_files

mdtraj = require("mdtraj")


@dataclasses.dataclass(frozen=True)
class ChainFolder:
    """One chain folder written by ``timewarp sample`` and its committed frames."""

    directory: Path
    record: dict  # chain.json: temperature_K, model, model_name, model_sha256, ...
    num_frames: int  # committed (recorded by the checkpoint)

    def topology(self) -> app.Topology:
        return app.PDBFile(str(self.directory / chain_files.TOPOLOGY_FILE)).topology

    def load(self) -> np.ndarray:
        """The committed frames, float32 [F, N, 3] in nm, checked finite."""
        num_atoms = self.topology().getNumAtoms()
        if self.num_frames == 0:
            return np.empty((0, num_atoms, 3), np.float32)
        path = self.directory / chain_files.TRAJECTORY_FILE
        with mdtraj.formats.DCDTrajectoryFile(str(path)) as handle:
            xyz, _, _ = handle.read(n_frames=self.num_frames)
        if xyz.shape[0] != self.num_frames or xyz.shape[1] != num_atoms:
            raise ValueError(
                f"{path} holds {xyz.shape[0]} frames of {xyz.shape[1]} atoms, not the "
                f"{self.num_frames} frames of {num_atoms} atoms its checkpoint records"
            )
        if not np.isfinite(xyz).all():
            raise ValueError(f"{path} holds non-finite coordinates; the chain folder was damaged")
        return (xyz / 10.0).astype(np.float32)  # DCD stores angstroms

    def split(self, split: str, burn_in: float) -> np.ndarray:
        """The frames of one split after the burn-in, float32 [F, N, 3] in nm."""
        frames = self.load()[burn_in_frames(self.num_frames, burn_in) :]
        gap = math.floor(0.5 * 0.1 * len(frames))  # half the validation segment
        segment = split_ranges(len(frames), gap)[split]
        return frames[segment.start : segment.stop]

    def source(self, burn_in: float) -> dict:
        """What the model's metadata records of this chain."""
        return {
            "folder": self.directory.name,
            "model_name": self.record.get("model_name"),
            "model_sha256": self.record.get("model_sha256"),
            "frames": self.num_frames,
            "burn_in_frames": burn_in_frames(self.num_frames, burn_in),
        }


def burn_in_frames(num_frames: int, burn_in: float) -> int:
    return math.ceil(burn_in * num_frames - 1e-9)


def check_burn_in(burn_in: float) -> None:
    if not 0.0 <= burn_in < 1.0:
        raise ValueError(f"the chain burn-in is a fraction in [0, 1), got {burn_in}")


def is_chain_folder(folder: Path) -> bool:
    return (folder / chain_files.CHECKPOINT_FILE).is_file() or (
        folder / chain_files.RECORD_FILE
    ).is_file()


def open_chain(folder: Path) -> ChainFolder:
    """A chain folder with its committed frame count; ValueError if it cannot be used."""
    if not (folder / chain_files.RECORD_FILE).is_file():
        raise ValueError(
            f"{folder} is a chain folder without {chain_files.RECORD_FILE} (written by an earlier "
            "version of `timewarp sample`): sample it again to train on it"
        )
    if not (folder / chain_files.CHECKPOINT_FILE).is_file():
        return ChainFolder(folder, _read_json(folder / chain_files.RECORD_FILE), 0)
    record = _read_json(folder / chain_files.RECORD_FILE)
    state = load_checkpoint(folder / chain_files.CHECKPOINT_FILE)
    frames = int(state["statistics"]["frames"])
    trajectory = folder / chain_files.TRAJECTORY_FILE
    num_atoms = app.PDBFile(str(folder / chain_files.TOPOLOGY_FILE)).topology.getNumAtoms()
    on_disk = count_dcd_frames(trajectory, num_atoms) if trajectory.is_file() else 0
    if on_disk < frames:
        raise ValueError(
            f"{trajectory} holds {on_disk} frames but its checkpoint records {frames}: the chain "
            "folder was damaged outside `timewarp sample`"
        )
    return ChainFolder(folder, record, frames)


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is unreadable ({error}); the folder was damaged") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a JSON object; the folder was damaged")
    return record


def split_data_folders(folders: list[Path]) -> tuple[list[Path], list[ChainFolder]]:
    """The ``timewarp train`` DATA folders as MD folders and chains, in the order given.

    A DATA folder is a ``timewarp simulate`` folder (a run, or a folder of runs), a chain folder,
    or a ``timewarp sample`` output (a folder of chain folders); anything else is refused.
    """
    md, chains = [], []
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(
                f"{folder} is not a folder; give `timewarp simulate` or `timewarp sample` folders"
            )
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
        if is_chain_folder(folder):
            chains.append(open_chain(folder))
        elif (folder / RUN_FILE).exists() or any((p / RUN_FILE).exists() for p in subfolders):
            md.append(folder)
        elif any(is_chain_folder(p) for p in subfolders):
            chains.extend(open_chain(p) for p in subfolders if is_chain_folder(p))
        else:
            raise ValueError(
                f"{folder} is neither a `timewarp simulate` data folder (run.json) nor a "
                "`timewarp sample` chain folder or output (chain.json, checkpoint.pt)"
            )
    given = [chain.directory.resolve() for chain in chains] + [f.resolve() for f in md]
    if len(set(given)) != len(given):
        raise ValueError("a data folder or chain is given twice: its frames would count double")
    return md, chains


def chains_by_molecule(md: list[Path], chains: list[ChainFolder]) -> dict[Path, list[ChainFolder]]:
    """Each chain under the MD folder of its molecule, checked to sample the same density."""
    references = {folder: list_trajectories(folder)[0] for folder in md}
    pooled: dict[Path, list[ChainFolder]] = {folder: [] for folder in md}
    for chain in chains:
        topology = chain.topology()
        sequence = _sequence(topology)
        matches = [f for f, t in references.items() if _sequence(t.topology()) == sequence]
        if not matches:
            raise ValueError(
                f"{chain.directory} samples {'-'.join(sequence)}, but no MD data of that sequence "
                "is among the DATA folders: a chain joins the MD data of its molecule"
            )
        folder = matches[0]
        _check_same_density(chain, topology, references[folder])
        pooled[folder].append(chain)
    return pooled


def _sequence(topology: app.Topology) -> tuple[str, ...]:
    return tuple(residue.name for residue in topology.residues())


def _atoms(topology: app.Topology) -> list[tuple[str, str]]:
    return [(atom.residue.name, atom.name) for atom in topology.atoms()]


def _check_same_density(chain: ChainFolder, topology: app.Topology, md: Trajectory) -> None:
    if _atoms(topology) != _atoms(md.topology()):
        raise ValueError(
            f"{chain.directory} holds the sequence of {md.directory} with other atoms or another "
            "atom order (termini, protonation): its frames cannot join that MD data"
        )
    temperature = float(chain.record["temperature_K"])
    if not math.isclose(temperature, md.settings.temperature_K):
        raise ValueError(
            f"{chain.directory} samples {temperature} K, {md.directory} {md.settings.temperature_K}"
            " K: pool data of one temperature"
        )
    md_system = md.directory / SYSTEM_FILE
    if not md_system.is_file():
        raise ValueError(f"{md.directory} has no {SYSTEM_FILE} to compare the chains' System with")
    if _normalised_system(md_system) != _normalised_system(
        chain.directory / chain_files.SYSTEM_FILE
    ):
        raise ValueError(
            f"{chain.directory} samples another System than {md.directory} (force field, "
            "solvent, constraints or parameters differ): its frames cannot join that MD data"
        )


def _normalised_system(path: str | os.PathLike) -> str:
    return openmm.XmlSerializer.serialize(openmm.XmlSerializer.deserialize(Path(path).read_text()))
