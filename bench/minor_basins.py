"""How often ``ic-backbone`` models propose a peptide's minor backbone basins, and how often such
proposals are accepted: a comparison of models (e.g. trained on MD only and on MD + the sampler's
chains, docs/training.md "Rounds: the sampler's chains as data").

From every ``--stride``-th frame of the second half of a ``timewarp simulate`` folder (a held-out
peptide's reference run), ``--proposals`` proposals per model with one fixed noise; for the backbone
moves (read from the noise number that chooses the move, as bench/backbone_moves.py does), the
fraction that lands with psi of the first residue in the alpha basin (-120 deg < psi < 50 deg) and
with phi of the last residue above 0, and the mean MH acceptance probability of all proposals and of
the backbone moves. The reference frames' own fractions are printed first. With ``--chain-steps``,
each model's TimewarpIntegrator chain from the middle frame reports its acceptance.

    python bench/minor_basins.py data/benchmark/reference-KT-... runs/md/model.pt runs/pool/model.pt
"""

from __future__ import annotations

import argparse
import math

import mdtraj
import numpy as np
import torch
from backbone_moves import dihedral_jumps, move_choice, proposal_and_energy

ALPHA_PSI_DEG = (-120.0, 50.0)


def minor_basin_fractions(trajectory: mdtraj.Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: psi of the first residue in the alpha basin, phi of the last residue > 0."""
    psi = np.degrees(mdtraj.compute_psi(trajectory)[1][:, 0])
    phi = np.degrees(mdtraj.compute_phi(trajectory)[1][:, -1])
    return (psi > ALPHA_PSI_DEG[0]) & (psi < ALPHA_PSI_DEG[1]), phi > 0


def compare(folder: str, model: str, stride: int, proposals: int, temperature: float) -> dict:
    reference = mdtraj.load(f"{folder}/trajectory.dcd", top=f"{folder}/topology.pdb")
    topology, proposal, reduced_energy = proposal_and_energy(folder, model, temperature)
    num_atoms = topology.getNumAtoms()
    generator = torch.Generator().manual_seed(0)
    states, kinds, acceptance = [], [], []
    for x in reference.xyz[len(reference) // 2 :: stride]:
        noise = torch.randn(1, proposals, num_atoms, 3, generator=generator, dtype=torch.float64)
        positions, log_ratio = proposal.forward_chains(
            torch.from_numpy(x).double().unsqueeze(0), torch.arange(num_atoms), noise
        )
        choice = move_choice(proposal, noise)
        kinds.extend((choice < proposal.backbone_weight).tolist())
        start = reduced_energy(x)
        for k in range(proposals):
            exponent = -(reduced_energy(positions[0, k].numpy()) - start) + float(log_ratio[0, k])
            acceptance.append(math.exp(min(exponent, 0.0)) if math.isfinite(exponent) else 0.0)
            states.append(positions[0, k].numpy())
    backbone = np.array(kinds)
    alpha, phi_positive = minor_basin_fractions(mdtraj.Trajectory(np.array(states), reference.top))
    return {
        "acceptance": float(np.mean(acceptance)),
        "backbone acceptance": float(np.mean(np.array(acceptance)[backbone])),
        "backbone proposals": int(backbone.sum()),
        "alpha": float(alpha[backbone].mean()),
        "phi>0": float(phi_positive[backbone].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a `timewarp simulate` trajectory folder")
    parser.add_argument("models", nargs="+", help="ic-backbone models")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--proposals", type=int, default=16)
    parser.add_argument("--chain-steps", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=310.0)
    args = parser.parse_args()
    reference = mdtraj.load(f"{args.folder}/trajectory.dcd", top=f"{args.folder}/topology.pdb")
    alpha, phi_positive = minor_basin_fractions(reference)
    print(f"reference frames: alpha {alpha.mean():.3f}, phi>0 {phi_positive.mean():.3f}")
    for model in args.models:
        result = compare(args.folder, model, args.stride, args.proposals, args.temperature)
        if args.chain_steps > 0:
            chain = dihedral_jumps(args.folder, model, args.chain_steps, 0.5, args.temperature)
            result["chain acceptance"] = chain["acceptance"]
        print(f"{model}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
