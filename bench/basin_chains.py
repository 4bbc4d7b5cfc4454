"""A peptide's backbone basins from independent chains: their spread tests the error bars, and MD
beside Timewarp at a hot temperature tests exactness where a rare basin is common.

    # independent Timewarp chains at 310 K
    python bench/basin_chains.py DF --references data/heldout-reference --chains 6 --budget 90 \
        --compiled -o runs/basin-chains/DF-310K.json
    # Timewarp MH and MD (0.5 fs, no constraints: the same energy) at 505 K
    python bench/basin_chains.py DF --references data/heldout-reference --chains 4 --budget 75 \
        --temperature 505 --md --compiled -o runs/basin-chains/DF-505K.json
    # the same against the tempering run's 505 K state (all its frames reweighted there by MBAR)
    python bench/basin_chains.py SVI --references data/heldout-reference --chains 4 --budget 75 \
        --temperature 505 --md --tempering runs/tempering-svi/SVI --compiled \
        -o runs/basin-chains/SVI-505K.json

The held-out table's basin errors come from each basin indicator's autocorrelation within one chain,
capped by its number of switches (:func:`openmm_timewarp.evaluation.heldout_table.population`); for
a basin of 1-2% entered a few dozen times that estimate is itself uncertain. Here ``--chains``
Timewarp MH chains of ``--budget`` wall seconds each (seeds 300, 301, ..., started from reference
frames spread over the pooled reference runs; the first tenth of each dropped) give every
``residue:basin`` population twice: pooled with the autocorrelation error, and as the mean of the
chains with the standard error of their spread, which assumes nothing about the autocorrelation.
With ``--md``, as many MD chains of the unconstrained 0.5 fs protocol (``md-0.5fs``: the potential
Timewarp samples, integrator error negligible) from the same starts, each right after its Timewarp
chain so both see the same load, and each basin's deviation between the two in combined chain-spread
errors. A proposal ratio off by a function of the state (a density or a Jacobian evaluated wrongly)
biases the sampled distribution by that function at any temperature; at 505 K MD enters DF's
C-terminal phi > 0 basin about 20 times per nanosecond (parallel tempering's 505 K state), so the
comparison is sharp there. With ``--tempering``, a parallel-tempering run of the peptide
(``bench/tempering_basins.py``) whose ladder holds ``--temperature`` gives each basin at that state
from all its frames (MBAR, :mod:`openmm_timewarp.evaluation.reference_reweighting`) and Timewarp's
deviation from it (the chains' spread and MBAR's error combined). The proposal model was trained
at 310 K; MH is exact at any temperature, only slower. One torch thread, Reference platform;
zwitterionic peptides with a `timewarp simulate` folder under ``--references``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import mdtraj
import numpy as np
import torch

from openmm_timewarp.evaluation import heldout_basins, reference_reweighting
from openmm_timewarp.evaluation.md_reference import load_reference, starting_frames
from openmm_timewarp.evaluation.reference import read_replica_frames
from openmm_timewarp.evaluation.runs import peptide_system, run_chain
from openmm_timewarp.evaluation.settings import MD_DATA_PROTOCOL, TIMEWARP, BenchmarkSettings

FIRST_SEED = 300


def basins_of(trajectories: list[mdtraj.Trajectory]) -> dict:
    """Each basin pooled over the chains (autocorrelation error) and as the chains' mean (error
    from their spread), with every chain's population."""
    _, pooled = heldout_basins.states_and_basins(trajectories)
    per_chain = [heldout_basins.states_and_basins([t])[1] for t in trajectories]
    basins = {}
    for basin, population in pooled.items():
        values = np.array([chain[basin]["population"] for chain in per_chain])
        basins[basin] = {
            **population,
            "chains_mean": float(values.mean()),
            "chains_error": float(values.std(ddof=1) / math.sqrt(len(values))),
            "chains": values.tolist(),
        }
    return basins


def deviation(timewarp: dict, population: float, error: float) -> float:
    """Timewarp's chains' mean minus ``population``, in the two errors combined (0 if both 0)."""
    spread = math.hypot(timewarp["chains_error"], error)
    return (timewarp["chains_mean"] - population) / spread if spread > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequence")
    parser.add_argument("--model", default="peptides")
    parser.add_argument("--references", type=Path, required=True)
    parser.add_argument("--chains", type=int, default=6)
    parser.add_argument("--budget", type=float, default=90.0, help="wall s per chain")
    parser.add_argument("--temperature", type=float, default=310.0, help="K")
    parser.add_argument("--md", action="store_true", help="MD chains (md-0.5fs) beside them")
    parser.add_argument(
        "--tempering", type=Path, help="a tempering run of the peptide, compared at --temperature"
    )
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.chains < 3:
        parser.error("--chains must be at least 3 for a spread")
    torch.set_num_threads(1)
    topology, system = peptide_system(args.sequence, "zwitterionic")
    tempering = {}
    if args.tempering:  # read first: a wrong run or temperature stops before the chains run
        frames = read_replica_frames(args.tempering)
        residues = [r.name for r in frames.trajectory.topology.residues]
        if residues != [r.name for r in topology.residues()]:
            parser.error(f"--tempering {args.tempering} is a run of {'-'.join(residues)}")
        try:
            state = frames.state_at(args.temperature)
        except ValueError as error:
            parser.error(f"--tempering {args.tempering}: {error}")
        tempering, _ = reference_reweighting.reweighted_basins(frames, state)
    settings = BenchmarkSettings(compiled=args.compiled, temperature_K=args.temperature)
    reference = load_reference(args.references / args.sequence, topology, settings)
    md_topology = mdtraj.Topology.from_openmm(topology)
    samplers = [TIMEWARP, MD_DATA_PROTOCOL] if args.md else [TIMEWARP]
    trajectories = {name: [] for name in samplers}
    acceptance = []
    for index, start in enumerate(starting_frames(reference, args.chains)):
        for name in samplers:
            chain = run_chain(
                name, args.model, system, topology, start, args.budget, settings, FIRST_SEED + index
            )
            # The starts are 310 K frames: the first tenth of each chain relaxes to --temperature.
            kept = chain.positions[len(chain.positions) // 10 :]
            trajectories[name].append(mdtraj.Trajectory(kept, md_topology))
            if name == TIMEWARP:
                acceptance.append(chain.counters["accepted"] / chain.counters["proposals"])
            print(
                f"{name} chain {index + 1}/{args.chains}: {len(chain.positions)} frames", flush=True
            )

    basins = {name: basins_of(runs) for name, runs in trajectories.items()}
    print(
        f"{args.sequence} at {args.temperature:.0f} K, {args.chains} chains x {args.budget:.0f} s "
        f"per sampler, model {args.model}, acceptance {np.mean(acceptance):.3f}"
    )
    extra = (["sigma from MD"] if args.md else []) + (
        ["tempering (MBAR)", "sigma from tempering"] if tempering else []
    )
    header = ["basin", "sampler", "pooled (autocorrelation error)", "chains' mean (spread)"]
    print("| " + " | ".join(header + ["chains"] + extra) + " |")
    print("|---" * (len(header) + 1 + len(extra)) + "|")
    for basin in basins[TIMEWARP]:
        timewarp = basins[TIMEWARP][basin]
        cells = []
        if args.md:
            md = basins[MD_DATA_PROTOCOL][basin]
            timewarp["sigma_from_md"] = deviation(timewarp, md["chains_mean"], md["chains_error"])
            cells.append(f"{timewarp['sigma_from_md']:+.1f}")
        if tempering:
            other = tempering[basin]
            timewarp["tempering"] = other
            timewarp["sigma_from_tempering"] = deviation(
                timewarp, other["population"], other["error"]
            )
            cells += [
                f"{other['population']:.4f} ± {other['error']:.4f}",
                f"{timewarp['sigma_from_tempering']:+.1f}",
            ]
        for name in samplers:
            row = basins[name][basin]
            own = cells if name == TIMEWARP else [""] * len(extra)
            print(
                f"| {basin} | {name} | {row['population']:.4f} ± {row['error']:.4f} "
                f"| {row['chains_mean']:.4f} ± {row['chains_error']:.4f} "
                f"| {' '.join(f'{v:.4f}' for v in row['chains'])} |"
                + "".join(f" {cell} |" for cell in own)
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "sequence": args.sequence,
        "model": args.model,
        "temperature_K": args.temperature,
        "tempering": str(args.tempering) if args.tempering else None,
        "chains": args.chains,
        "budget_s": args.budget,
        "acceptance": acceptance,
        "basins": basins,
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
