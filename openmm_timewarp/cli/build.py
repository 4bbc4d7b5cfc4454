"""``timewarp build``: a peptide from its sequence, written as PDB (and optionally System XML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from openmm_timewarp.data.peptides import TERMINI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build a peptide from its sequence and write a PDB (and optionally the System XML)",
        description="Build a peptide (amber14-all + OBC2 as a native GBSAOBCForce) from one-letter "
        "codes, protonated at pH 7, and print its atom count and potential energy.",
    )
    parser.add_argument("sequence", help="one-letter codes, e.g. A (alanine dipeptide when capped)")
    parser.add_argument("--termini", choices=TERMINI, default="capped")
    parser.add_argument("--phi", type=float, help="backbone phi of every residue, degrees")
    parser.add_argument("--psi", type=float, help="backbone psi of every residue, degrees")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PDB file to write")
    parser.add_argument("--system", type=Path, help="also write the serialized System (XML)")
    parser.set_defaults(handler=_build)


def _build(args: argparse.Namespace) -> int:
    import openmm
    import openmm.app as app

    from openmm_timewarp.data.peptides import build_peptide, create_system

    modeller = build_peptide(args.sequence, args.termini, phi=args.phi, psi=args.psi)
    system = create_system(modeller.topology)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    energy = context.getState(getEnergy=True).getPotentialEnergy()
    try:
        with open(args.output, "w") as handle:
            app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
        if args.system is not None:
            args.system.write_text(openmm.XmlSerializer.serialize(system))
    except OSError as error:
        raise ValueError(f"Cannot write {error.filename}: {error.strerror}.") from None
    print(f"{args.output}: {modeller.topology.getNumAtoms()} atoms, potential energy {energy}")
    return 0
