"""Acceptance of the bundled alanine-dipeptide model per labelling of its equivalent hydrogens.

From examples/alanine-dipeptide.pdb (amber14-all + OBC2, minimised, Reference platform): the
structure as it is, each exchange of two hydrogens of the ACE, ALA and NME methyls, and one
combination; and openmmtools' AlanineDipeptideImplicit(constraints=None) (ff96 + OBC, minimised),
with the fraction of sampled frames (every 20 steps) with phi > 0. Results: docs/benchmarks.md,
"Equivalent atoms".

    python bench/equivalent_atoms.py [--model PATH] [--steps 3000] [--openmmtools-steps 30000]
"""

import argparse

import mdtraj
import numpy as np
import openmm
import torch
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.peptides import create_system

REFERENCE = openmm.Platform.getPlatformByName("Reference")
METHYLS = (("ACE", ("H1", "H2", "H3")), ("ALA", ("HB1", "HB2", "HB3")), ("NME", ("H1", "H2", "H3")))
COMBINATION = (("ACE", "H1", "H3"), ("ALA", "HB2", "HB3"), ("NME", "H1", "H2"))


def minimised(system: openmm.System, positions) -> np.ndarray:
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), REFERENCE)
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0)
    return (
        context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    )


def run(model, topology, system, start, steps, stride=None):
    """Acceptance, non-finite rejections and, with ``stride``, the phi of every stride-th step."""
    integrator = TimewarpIntegrator(
        model, 310 * unit.kelvin, topology=topology, seed=7, max_proposal_batch=256
    )
    context = openmm.Context(system, integrator, REFERENCE)
    context.setPositions(start * unit.nanometer)
    phis = []
    if stride is None:
        integrator.step(steps)
    else:
        trajectory_topology = mdtraj.Topology.from_openmm(topology)
        for _ in range(steps // stride):
            integrator.step(stride)
            x = context.getState(getPositions=True).getPositions(asNumpy=True)
            frame = mdtraj.Trajectory(x.value_in_unit(unit.nanometer)[None], trajectory_topology)
            phis.append(float(mdtraj.compute_phi(frame)[1][0, 0]))
    return integrator.getAcceptanceRate(), integrator.getNumRejectedNonFinite(), np.array(phis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="alanine-dipeptide")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--openmmtools-steps", type=int, default=30000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pdb = app.PDBFile("examples/alanine-dipeptide.pdb")
    system = create_system(pdb.topology)
    start = minimised(system, pdb.positions)
    index = {(atom.residue.name, atom.name): atom.index for atom in pdb.topology.atoms()}
    cases = {"as is": ()}
    for residue, hydrogens in METHYLS:
        for i, j in ((0, 1), (0, 2), (1, 2)):
            cases[f"{residue} {hydrogens[i]}/{hydrogens[j]}"] = (
                (residue, hydrogens[i], hydrogens[j]),
            )
    cases["ACE H1/H3 + ALA HB2/HB3 + NME H1/H2"] = COMBINATION
    print("| labelling | acceptance | rejected as non-finite |\n|---|---|---|")
    for name, pairs in cases.items():
        swapped = start.copy()
        for residue, a, b in pairs:
            i, j = index[(residue, a)], index[(residue, b)]
            swapped[[i, j]] = swapped[[j, i]]
        rate, rejected, _ = run(args.model, pdb.topology, system, swapped, args.steps)
        print(f"| {name} | {rate:.3f} | {rejected} |", flush=True)
    from openmmtools import testsystems

    other = testsystems.AlanineDipeptideImplicit(constraints=None)
    start = minimised(other.system, other.positions)
    rate, rejected, phis = run(
        args.model, other.topology, other.system, start, args.openmmtools_steps, stride=20
    )
    print(
        f"openmmtools AlanineDipeptideImplicit: acceptance {rate:.3f} over "
        f"{args.openmmtools_steps} steps ({rejected} rejected as non-finite), "
        f"phi > 0 in {(phis > 0).sum()} of {len(phis)} frames"
    )


if __name__ == "__main__":
    main()
