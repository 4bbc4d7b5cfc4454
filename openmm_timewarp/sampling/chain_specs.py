"""What a chain is before it runs: :class:`ChainSpec` (System, start, model, seed), and
:func:`peptide_chains`, the specs of many chains of peptides given by sequence or PDB file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from openmm_timewarp.data.peptides import build_peptide, create_system, read_system
from openmm_timewarp.sampling.ranks import chain_seed


@dataclass
class ChainSpec:
    """One chain: its System, start, proposal model and seed.

    ``atom_types`` and ``chiral_centres`` default to what the model's metadata and the Topology
    give (as for :class:`~openmm_timewarp.TimewarpIntegrator`). ``name`` is the chain's folder.
    """

    name: str
    system: openmm.System
    topology: app.Topology
    positions: np.ndarray
    model: str | os.PathLike
    seed: int
    atom_types: Sequence[int] | None = None
    chiral_centres: Sequence[Sequence[int]] | None = None


def peptide_chains(
    model: str | os.PathLike,
    peptides: Sequence[str],
    chains_per_peptide: int,
    seed: int,
    termini: str = "capped",
    system_file: str | os.PathLike | None = None,
) -> list[ChainSpec]:
    """``chains_per_peptide`` chains of each peptide, a PDB file or a sequence of one-letter codes
    (built with :func:`~openmm_timewarp.data.peptides.build_peptide`),
    all with ``model``; parameterised
    with amber14-all + OBC2, or for one peptide the serialized System in ``system_file``. Chain i
    is named ``<i>-<peptide>`` and seeded ``chain_seed(seed, i)``.
    """
    if chains_per_peptide < 1:
        raise ValueError(f"chains_per_peptide must be positive, got {chains_per_peptide}")
    if system_file is not None and len(peptides) != 1:
        raise ValueError(f"a System file is the System of one peptide; {len(peptides)} were given")
    specs = []
    for peptide in peptides:
        path = Path(peptide)
        if path.suffix.lower() == ".pdb":
            if not path.is_file():
                raise ValueError(f"no PDB file {path}")
            pdb = app.PDBFile(str(path))
            topology, positions, label = pdb.topology, pdb.positions, path.stem
        else:
            modeller = build_peptide(peptide, termini)
            topology, positions, label = modeller.topology, modeller.positions, peptide.upper()
        if system_file is None:
            system = create_system(topology)
        else:
            system = read_system(system_file, topology)
        coordinates = np.array(positions.value_in_unit(unit.nanometer))
        for _ in range(chains_per_peptide):
            index = len(specs)
            specs.append(
                ChainSpec(
                    f"{index:04d}-{label}",
                    system,
                    topology,
                    coordinates,
                    model,
                    chain_seed(seed, index),
                )
            )
    return specs
