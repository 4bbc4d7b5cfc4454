"""Two proposal models side by side on held-out peptides: Timewarp MH chains of each, in
alternating blocks, with ESS per wall second of TIC0 and every backbone dihedral, acceptance and
the phi > 0 fraction of each residue.

For each sequence (zwitterionic), from the first frame of its reference (a `timewarp simulate`
folder under ``--references``, which also gives TICA and the coverage check), ``--blocks`` blocks
of ``--budget`` wall seconds per model, model A then model B in each block (block b seeded
200 + b for both), so both see the same machine load; each model's chains are pooled for the
ESS (``evaluation.analysis.analyse_chains``). One torch thread, Reference platform, TorchScript
proposals unless ``--compiled``. Results go to ``--output`` as JSON and are printed.

    python bench/compare_models.py --sequences YSKC AI --models peptides runs/r1/model.pt \
        --references data/heldout-reference --budget 60 --blocks 4 -o runs/compare.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mdtraj
import numpy as np
import torch

from openmm_timewarp.evaluation.analysis import analyse_chains
from openmm_timewarp.evaluation.md_reference import load_reference, starting_frames
from openmm_timewarp.evaluation.runs import peptide_system, run_chain
from openmm_timewarp.evaluation.settings import TIMEWARP, BenchmarkSettings


def compare(sequence: str, models: list[str], args: argparse.Namespace) -> dict:
    """Each model's pooled metrics on one sequence."""
    topology, system = peptide_system(sequence, "zwitterionic")
    settings = BenchmarkSettings(compiled=args.compiled)
    reference = load_reference(args.references / sequence, topology, settings)
    start = starting_frames(reference, 1)[0]
    chains = {model: [] for model in models}
    for block in range(args.blocks):
        for model in models:
            chain = run_chain(
                TIMEWARP, model, system, topology, start, args.budget, settings, seed=200 + block
            )
            chains[model].append(chain)
    results = {}
    md_topology = mdtraj.Topology.from_openmm(topology)
    for model, runs in chains.items():
        metrics, _ = analyse_chains(runs, topology, reference)
        positions = np.concatenate([run.positions for run in runs])
        _, phi = mdtraj.compute_phi(mdtraj.Trajectory(positions, md_topology))
        results[model] = {
            "acceptance": sum(run.counters["accepted"] for run in runs)
            / sum(run.counters["proposals"] for run in runs),
            "steps_per_s": metrics["steps"] / metrics["wall_s"],
            "phi_positive": (phi > 0).mean(axis=0).tolist(),
            "ess_per_s": {
                key: [rate["ess_per_s"], rate["ess_per_s_error"]]
                for key, rate in metrics["ess"].items()
            },
        }
        rates = " ".join(
            f"{key} {value:.3g}±{error:.2g}"
            for key, (value, error) in results[model]["ess_per_s"].items()
        )
        print(
            f"{sequence} {model}: acceptance {results[model]['acceptance']:.3f}, "
            f"{results[model]['steps_per_s']:.0f} steps/s, phi > 0 "
            f"{np.round(results[model]['phi_positive'], 4).tolist()}\n    {rates}",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", nargs="+", required=True)
    parser.add_argument("--models", nargs=2, required=True, help="model A and model B")
    parser.add_argument("--references", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=60.0, help="wall s per block and model")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {sequence: compare(sequence, args.models, args) for sequence in args.sequences}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
