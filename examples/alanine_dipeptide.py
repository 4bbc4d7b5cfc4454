"""Alanine dipeptide with TimewarpIntegrator: an ordinary OpenMM script with one line changed.

The System is the one the bundled model was trained for: capped ACE-ALA-NME, amber14-all with OBC2
implicit solvent, no cutoff, no constraints, 310 K. Where an MD script would create a
``LangevinMiddleIntegrator``, this one creates a ``TimewarpIntegrator``: each step is one
Metropolis-Hastings iteration with a learned large-time-step proposal, so the chain samples the
exact Boltzmann distribution. At the end it prints the acceptance rate, the speed and the fraction
of states with phi > 0 (the rare left-handed region), and writes a Ramachandran plot.

    python examples/alanine_dipeptide.py --steps 10000 --output runs/alanine-dipeptide

alanine-dipeptide.pdb next to this script was written by ``timewarp build A -o
examples/alanine-dipeptide.pdb`` (an extended chain, hydrogens added at pH 7).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files only; no display needed

import matplotlib.pyplot as plt
import mdtraj
import numpy as np
from openmm import Platform, app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.peptides import replace_custom_gb_with_gbsaobc
from openmm_timewarp.models.contract import resolve_model_path

PDB_FILE = Path(__file__).with_name("alanine-dipeptide.pdb")
TEMPERATURE = 310 * unit.kelvin


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sample alanine dipeptide at 310 K with TimewarpIntegrator and plot phi/psi."
    )
    parser.add_argument(
        "--steps", type=int, default=10_000, help="Metropolis-Hastings steps (default 10000)"
    )
    parser.add_argument(
        "--model",
        default="alanine-dipeptide",
        help="proposal model: a bundled name or a .pt file (default: alanine-dipeptide)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("runs/alanine-dipeptide"),
        help="folder for the trajectory and the plot (default: runs/alanine-dipeptide)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the integrator's random seed")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be a positive number of steps")
    try:
        resolve_model_path(args.model)
    except ValueError as error:
        parser.error(f"{error}. Train one with `timewarp train` and pass it with --model PATH.")
    return args


def ramachandran_plot(phi: np.ndarray, psi: np.ndarray, path: Path, title: str) -> None:
    """A 2D histogram of phi and psi (degrees), log-scaled, written as a PNG."""
    figure, axes = plt.subplots(figsize=(5.0, 4.5))
    bins = np.linspace(-180.0, 180.0, 73)
    counts, _, _ = np.histogram2d(phi, psi, bins=(bins, bins))
    image = axes.pcolormesh(
        bins, bins, np.ma.masked_equal(counts.T, 0), norm=matplotlib.colors.LogNorm()
    )
    figure.colorbar(image, ax=axes, label="states")
    axes.set(
        xlabel="phi (degrees)",
        ylabel="psi (degrees)",
        xlim=(-180, 180),
        ylim=(-180, 180),
        title=title,
        xticks=range(-180, 181, 90),
        yticks=range(-180, 181, 90),
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    trajectory_path = args.output / "trajectory.dcd"
    plot_path = args.output / "ramachandran.png"

    pdb = app.PDBFile(str(PDB_FILE))
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    system = forcefield.createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, removeCMMotion=False
    )
    # implicit/obc2.xml builds OBC2 as a CustomGBForce, which runs 30-40x slower on these CPUs
    # than the equivalent native GBSAOBCForce; the model was trained with the native one.
    replace_custom_gb_with_gbsaobc(system)

    integrator = TimewarpIntegrator(args.model, TEMPERATURE, topology=pdb.topology, seed=args.seed)
    # was: LangevinMiddleIntegrator(310*kelvin, 1/picosecond, 0.002*picoseconds)
    simulation = app.Simulation(
        pdb.topology, system, integrator, Platform.getPlatformByName("Reference")
    )
    simulation.context.setPositions(pdb.positions)
    simulation.minimizeEnergy()

    report_interval = max(1, args.steps // 10)
    frame_interval = max(1, args.steps // 5_000)
    simulation.reporters.append(
        app.StateDataReporter(
            sys.stdout,
            report_interval,
            step=True,
            time=True,
            potentialEnergy=True,
            temperature=True,
            progress=True,
            totalSteps=args.steps,
        )
    )
    simulation.reporters.append(app.DCDReporter(str(trajectory_path), frame_interval))

    started = time.perf_counter()
    simulation.step(args.steps)
    seconds = time.perf_counter() - started

    trajectory = mdtraj.load(str(trajectory_path), top=mdtraj.Topology.from_openmm(pdb.topology))
    phi = np.degrees(mdtraj.compute_phi(trajectory)[1][:, 0])
    psi = np.degrees(mdtraj.compute_psi(trajectory)[1][:, 0])
    acceptance = integrator.getAcceptanceRate()
    metadata = integrator.getMetadata()
    print(f"model: {metadata.name} ({metadata.family}, tau {metadata.tau_ps} ps)")
    print(
        f"acceptance rate: {acceptance:.4f} "
        f"({integrator.getNumAccepted()} of {integrator.getNumProposed()} proposals accepted)"
    )
    print(
        f"speed: {args.steps / seconds:.1f} steps/s "
        f"({args.steps} steps in {seconds:.1f} s, {integrator.getNumModelCalls()} model calls)"
    )
    print(
        f"time: model calls {integrator.getModelSeconds():.1f} s, energy evaluations "
        f"{integrator.getEnergySeconds():.1f} s, reporters and the rest "
        f"{seconds - integrator.getModelSeconds() - integrator.getEnergySeconds():.1f} s"
    )
    print(f"phi > 0 fraction: {np.mean(phi > 0):.4f} (of {len(phi)} frames)")
    ramachandran_plot(
        phi, psi, plot_path, f"TimewarpIntegrator, {args.steps} steps, acceptance {acceptance:.3f}"
    )
    print(f"Ramachandran plot: {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
