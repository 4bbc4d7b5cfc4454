"""Re-export the bundled alanine-dipeptide model with its reference labelling of equivalent atoms.

The same weights, rebuilt with the labelling of examples/alanine-dipeptide.pdb (the labelling of
its training data, built by the project's builder), so that structures whose methyl hydrogens
are labelled the other way round are proposed for as well (docs/contract.md, "Equivalent atoms"):

    python examples/reexport_bundled_model.py openmm_timewarp/models/alanine-dipeptide.pt \
        -o openmm_timewarp/models/alanine-dipeptide.pt
"""

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from openmm import app, unit

from openmm_timewarp.models.contract import export, load_model
from openmm_timewarp.proposals.ic.families import rebuild_with_reference

EXAMPLE_PDB = Path(__file__).resolve().parent / "alanine-dipeptide.pdb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the previous model file")
    parser.add_argument("-o", "--output", required=True, help="where to write the new file")
    args = parser.parse_args()
    scripted, metadata = load_model(args.model)
    pdb = app.PDBFile(str(EXAMPLE_PDB))
    positions = torch.tensor(np.array(pdb.positions.value_in_unit(unit.nanometer))).float()
    model = rebuild_with_reference(
        scripted.proposal, metadata, pdb.topology, positions.unsqueeze(0)
    )
    training = dict(metadata.training)
    training["equivalent_atoms"] = (
        "labelled from the geometry; reference labelling of examples/alanine-dipeptide.pdb"
    )
    path = export(model, args.output, replace(metadata, training=training), positions)
    print(f"{path}: {model.equivalent.num_groups} groups of equivalent atoms")


if __name__ == "__main__":
    main()
