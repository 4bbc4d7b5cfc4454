"""How an ``ic-backbone`` proposal's move mixture changes mixing: ESS per MH step of each
peptide's slowest backbone dihedral, one TimewarpIntegrator chain per mixture, same seed.

For each sequence (default: 5 training dipeptides drawn from the committed split with
``--draw-seed``, so nothing held out is used to choose a setting), zwitterionic, built and
minimised, the transferable model's proposal is built once per ``--mixtures`` entry
(``BACKBONE,ROTOR`` move probabilities; the rest are local moves) and exported to a temporary
file; each chain runs ``--steps`` MH steps on the Reference platform, a frame every 10 steps.
Per chain: acceptance and, for each backbone dihedral (mdtraj's phi and psi), the ESS of its cos
and sin (Sokal's window), the smaller one per dihedral; the slowest dihedral's ESS per 1,000 steps
with its error. An MH step costs one energy evaluation whatever the move, so ESS per step is the
comparison (model calls differ little with acceptance).

    python bench/move_mixture.py [--mixtures 0.4,0.4 0.8,0.15] [--steps 200000]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import mdtraj
import numpy as np
import openmm
from openmm import unit

from openmm_timewarp import TimewarpIntegrator, export
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.data.splits import load_split
from openmm_timewarp.evaluation.metrics import integrated_autocorrelation_time
from openmm_timewarp.models.resolve import load_model, molecule_metadata, resolve_model_path
from openmm_timewarp.proposals.backbone.proposal import backbone_proposal

FRAME_INTERVAL = 10


def minimised(sequence: str):
    """The zwitterionic peptide, its System and a minimised start."""
    modeller = build_peptide(sequence, "zwitterionic")
    system = create_system(modeller.topology)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    return modeller.topology, system, context.getState(getPositions=True).getPositions()


def slowest_dihedral_ess(topology, frames: np.ndarray) -> tuple[str, float, float]:
    """The backbone dihedral with the fewest effective samples: its name, ESS and ESS error."""
    trajectory = mdtraj.Trajectory(frames, mdtraj.Topology.from_openmm(topology))
    _, phi = mdtraj.compute_phi(trajectory)
    _, psi = mdtraj.compute_psi(trajectory)
    named = [(f"phi{i}", phi[:, i]) for i in range(phi.shape[1])]
    named += [(f"psi{i}", psi[:, i]) for i in range(psi.shape[1])]
    rows = []
    for name, angle in named:
        estimate = min(
            (integrated_autocorrelation_time(f(angle)) for f in (np.cos, np.sin)),
            key=lambda e: e.ess,
        )
        rows.append((name, estimate.ess, estimate.ess_error))
    return min(rows, key=lambda row: row[1])


def run_chain(path: Path, topology, system, positions, steps: int, seed: int):
    integrator = TimewarpIntegrator(str(path), 310 * unit.kelvin, topology=topology, seed=seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    frames = []
    for _ in range(steps // FRAME_INTERVAL):
        integrator.step(FRAME_INTERVAL)
        frames.append(
            context.getState(getPositions=True)
            .getPositions(asNumpy=True)
            .value_in_unit(unit.nanometer)
        )
    return integrator.getAcceptanceRate(), np.asarray(frames, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="peptides")
    parser.add_argument("--sequences", nargs="+", help="default: --count training dipeptides")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--draw-seed", type=int, default=7)
    parser.add_argument("--mixtures", nargs="+", default=["0.4,0.4", "0.8,0.15"])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sequences = args.sequences
    if not sequences:
        training = load_split("dipeptides").training
        order = np.random.default_rng(args.draw_seed).permutation(len(training))
        sequences = [training[i] for i in order[: args.count]]
    mixtures = [tuple(float(v) for v in mixture.split(",")) for mixture in args.mixtures]
    network, metadata = load_model(resolve_model_path(args.model))
    print("| peptide | backbone, rotor | acceptance | slowest dihedral | ESS per 1,000 steps |")
    print("|---|---|---|---|---|")
    log_gains: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for sequence in sequences:
            topology, system, positions = minimised(sequence)
            first = None
            for backbone_weight, rotor_weight in mixtures:
                proposal = backbone_proposal(network, topology, backbone_weight, rotor_weight)
                molecule = molecule_metadata(metadata, proposal, topology)
                path = export(proposal, Path(folder) / f"{sequence}.pt", molecule)
                acceptance, frames = run_chain(
                    path, topology, system, positions, args.steps, args.seed
                )
                name, ess, error = slowest_dihedral_ess(topology, frames)
                per_1000 = 1000 * ess / args.steps
                print(
                    f"| {sequence} | {backbone_weight}, {rotor_weight} | {acceptance:.3f} | "
                    f"{name} | {per_1000:.3g} ± {1000 * error / args.steps:.2g} |",
                    flush=True,
                )
                if first is None:
                    first = per_1000
                else:
                    log_gains.append(math.log(per_1000 / first))
    if log_gains:
        print(
            f"geometric mean of the later mixtures' ESS over the first's: "
            f"{math.exp(np.mean(log_gains)):.2f}x over {len(log_gains)} chains"
        )


if __name__ == "__main__":
    main()
