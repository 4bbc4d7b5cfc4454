"""Where an ``ic-backbone`` proposal's acceptance comes from: the mean MH acceptance probability of
each of its moves (backbone, rotor, local) from equilibrium frames, and how often a chain moves
each backbone dihedral by more than a threshold.

From every ``--stride``-th frame of a ``timewarp simulate`` folder (the second half of its
trajectory), ``--proposals`` proposals with a fixed seed; each proposal's kind is read from the
noise number that chooses it, and its acceptance probability ``min(1, exp(-(u' - u) + logQRatio))``
from a Reference-platform Context of the folder's System. Then, with ``--chain-steps``, one
TimewarpIntegrator chain from the trajectory's middle frame: the fraction of MH steps that move
each of mdtraj's phi / psi by more than ``--jump`` radians.

    python bench/backbone_moves.py data/benchmark/reference-FP-... [--model peptides]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import mdtraj
import numpy as np
import openmm
import torch
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.peptides import create_system
from openmm_timewarp.models.resolve import load_model
from openmm_timewarp.proposals.backbone.proposal import ICBackboneProposal, backbone_proposal


def proposal_and_energy(
    folder: str, model: str, temperature: float
) -> tuple[app.Topology, ICBackboneProposal, Callable[[np.ndarray], float]]:
    """The folder's topology, the model's proposal for it, and its reduced energy u(x) = U(x) / kT
    from a Reference-platform Context of its System."""
    topology = app.PDBFile(f"{folder}/topology.pdb").topology
    context = openmm.Context(
        create_system(topology),
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("Reference"),
    )
    kT = (unit.MOLAR_GAS_CONSTANT_R * temperature * unit.kelvin).value_in_unit(
        unit.kilojoule_per_mole
    )

    def reduced_energy(x: np.ndarray) -> float:
        context.setPositions(x)
        energy = context.getState(getEnergy=True).getPotentialEnergy()
        return energy.value_in_unit(unit.kilojoule_per_mole) / kT

    network, _ = load_model(model)
    return topology, backbone_proposal(network, topology), reduced_energy


def move_choice(proposal: ICBackboneProposal, noise: torch.Tensor) -> torch.Tensor:
    """Per proposal of ``noise`` (1, B, N, 3), the uniform number in [0, 1) that picks its move:
    a backbone move below ``backbone_weight``, then rotor, then local."""
    chooser = noise.reshape(noise.shape[1], -1)[:, proposal.num_internal]
    return 0.5 * (1.0 + torch.erf(chooser / math.sqrt(2.0)))


def move_acceptance(
    folder: str, model: str, stride: int, proposals: int, temperature: float
) -> dict[str, list[float]]:
    """Acceptance probabilities of the proposals from the folder's frames, by move kind."""
    frames = mdtraj.load(f"{folder}/trajectory.dcd", top=f"{folder}/topology.pdb").xyz
    topology, proposal, reduced_energy = proposal_and_energy(folder, model, temperature)
    num_atoms = topology.getNumAtoms()
    atom_types = torch.arange(num_atoms)
    generator = torch.Generator().manual_seed(0)
    accepted: dict[str, list[float]] = {"backbone": [], "rotor": [], "local": []}
    for x in frames[len(frames) // 2 :: stride]:
        noise = torch.randn(1, proposals, num_atoms, 3, generator=generator, dtype=torch.float64)
        positions, log_ratio = proposal.forward_chains(
            torch.from_numpy(x).double().unsqueeze(0), atom_types, noise
        )
        choice = move_choice(proposal, noise)
        start = reduced_energy(x)
        for k in range(proposals):
            if choice[k] < proposal.backbone_weight:
                kind = "backbone"
            elif choice[k] < proposal.backbone_weight + proposal.rotor_weight:
                kind = "rotor"
            else:
                kind = "local"
            exponent = -(reduced_energy(positions[0, k].numpy()) - start) + float(log_ratio[0, k])
            accepted[kind].append(math.exp(min(exponent, 0.0)) if math.isfinite(exponent) else 0.0)
    return accepted


def dihedral_jumps(folder: str, model: str, steps: int, jump: float, temperature: float) -> dict:
    """Per phi / psi of mdtraj, the fraction of a chain's MH steps that move it by > ``jump``."""
    trajectory = mdtraj.load(f"{folder}/trajectory.dcd", top=f"{folder}/topology.pdb")
    topology = app.PDBFile(f"{folder}/topology.pdb").topology
    integrator = TimewarpIntegrator(model, temperature, topology=topology, seed=3)
    context = openmm.Context(
        create_system(topology), integrator, openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(trajectory.xyz[len(trajectory) // 2])
    states = []
    for _ in range(steps):
        integrator.step(1)
        positions = context.getState(getPositions=True).getPositions(asNumpy=True)
        states.append(positions.value_in_unit(unit.nanometer))
    chain = mdtraj.Trajectory(np.array(states), trajectory.topology)
    fractions = {"acceptance": integrator.getAcceptanceRate()}
    for name, compute in (("phi", mdtraj.compute_phi), ("psi", mdtraj.compute_psi)):
        _, angles = compute(chain)
        moved = np.abs(np.angle(np.exp(1j * np.diff(angles, axis=0)))) > jump
        for index, fraction in enumerate(moved.mean(axis=0)):
            fractions[f"{name}{index}"] = float(fraction)
    return fractions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a `timewarp simulate` trajectory folder")
    parser.add_argument("--model", default="peptides", help="an ic-backbone model")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--proposals", type=int, default=16)
    parser.add_argument("--chain-steps", type=int, default=4000)
    parser.add_argument("--jump", type=float, default=0.5, help="radians")
    parser.add_argument("--temperature", type=float, default=310.0)
    args = parser.parse_args()
    accepted = move_acceptance(
        args.folder, args.model, args.stride, args.proposals, args.temperature
    )
    for kind, values in accepted.items():
        print(f"{kind} moves: {len(values)}, mean acceptance probability {np.mean(values):.3f}")
    if args.chain_steps > 0:
        jumps = dihedral_jumps(
            args.folder, args.model, args.chain_steps, args.jump, args.temperature
        )
        print(
            f"chain of {args.chain_steps} steps: "
            + ", ".join(f"{k} {v:.4f}" for k, v in jumps.items())
        )


if __name__ == "__main__":
    main()
