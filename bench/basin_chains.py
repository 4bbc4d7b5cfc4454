"""A peptide's backbone basins from independent Timewarp chains: their spread tests the error bars.

    python bench/basin_chains.py DF --model peptides --references data/heldout-reference \
        --chains 6 --budget 100 --compiled -o runs/basin-chains/DF.json

The held-out table's basin errors come from each basin indicator's autocorrelation within one
chain (:func:`openmm_timewarp.evaluation.heldout_table.population`); for a basin of 1-2% entered a
few dozen times that estimate is itself uncertain. Here ``--chains`` Timewarp MH chains of
``--budget`` wall seconds each (seeds 300, 301, ..., started from reference frames spread over the
pooled reference runs, equilibrium samples, so no burn-in) give every ``residue:basin`` population
twice: pooled with the autocorrelation error, and as the mean of the chains with the standard
error of their spread, which assumes nothing about the autocorrelation. One torch thread,
Reference platform; zwitterionic peptides with a `timewarp simulate` folder under
``--references``. The JSON keeps both and each chain's populations.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mdtraj
import numpy as np
import torch

from openmm_timewarp.evaluation import heldout_basins
from openmm_timewarp.evaluation.md_reference import load_reference, starting_frames
from openmm_timewarp.evaluation.runs import peptide_system, run_chain
from openmm_timewarp.evaluation.settings import TIMEWARP, BenchmarkSettings

FIRST_SEED = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequence")
    parser.add_argument("--model", default="peptides")
    parser.add_argument("--references", type=Path, required=True)
    parser.add_argument("--chains", type=int, default=6)
    parser.add_argument("--budget", type=float, default=100.0, help="wall s per chain")
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.chains < 3:
        parser.error("--chains must be at least 3 for a spread")
    torch.set_num_threads(1)

    topology, system = peptide_system(args.sequence, "zwitterionic")
    settings = BenchmarkSettings(compiled=args.compiled)
    reference = load_reference(args.references / args.sequence, topology, settings)
    md_topology = mdtraj.Topology.from_openmm(topology)
    trajectories, acceptance = [], []
    for index, start in enumerate(starting_frames(reference, args.chains)):
        chain = run_chain(
            TIMEWARP, args.model, system, topology, start, args.budget, settings, FIRST_SEED + index
        )
        trajectories.append(mdtraj.Trajectory(chain.positions, md_topology))
        acceptance.append(chain.counters["accepted"] / chain.counters["proposals"])
        print(f"chain {index + 1}/{args.chains}: {len(chain.positions)} frames", flush=True)

    _, pooled = heldout_basins.states_and_basins(trajectories)
    per_chain = [heldout_basins.states_and_basins([t])[1] for t in trajectories]
    basins = {}
    print(f"{args.sequence}, {args.chains} chains x {args.budget:.0f} s, model {args.model}")
    print("| basin | pooled (autocorrelation error) | chains' mean (their spread) | chains |")
    print("|---|---|---|---|")
    for basin, population in pooled.items():
        values = np.array([chain[basin]["population"] for chain in per_chain])
        spread_error = float(values.std(ddof=1) / np.sqrt(len(values)))
        basins[basin] = {
            **population,
            "chains_mean": float(values.mean()),
            "chains_error": spread_error,
            "chains": values.tolist(),
        }
        print(
            f"| {basin} | {population['population']:.4f} ± {population['error']:.4f} "
            f"| {values.mean():.4f} ± {spread_error:.4f} | {' '.join(f'{v:.4f}' for v in values)} |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "sequence": args.sequence,
        "model": args.model,
        "chains": args.chains,
        "budget_s": args.budget,
        "acceptance": acceptance,
        "basins": basins,
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
