"""A rare state's population error per CPU second: Timewarp MH against parallel tempering.

    python bench/rare_state.py -o runs/rare-state --tempering-cpu 240 --timewarp-budget 120

Two comparisons, each run one sampler after the other in this process
(:mod:`openmm_timewarp.evaluation.rare_state` defines the statistic): alanine dipeptide's phi > 0
population with the bundled "alanine-dipeptide" model, then one held-out dipeptide (zwitterionic,
drawn from the split's held-out list with ``--heldout-seed``, or ``--heldout-sequence``, a held-out
dipeptide or tetrapeptide) with the bundled "dipeptides" model (or ``--heldout-model``), on the
Ramachandran basin least populated in its parallel-tempering run (or ``--heldout-state``) of its
first phi and psi (or the ``--heldout-torsion``-th: 2 is a zwitterionic tetrapeptide's last
residue's phi). Writes
OUTPUT/rare_state.json and each sampler's analysed phi and psi (radians) to
OUTPUT/SEQUENCE-samples.npz, and prints one line per comparison.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openmm_timewarp.data.splits import load_split
from openmm_timewarp.evaluation import metrics, rare_state
from openmm_timewarp.evaluation.heldout_draw import HELD_OUT_LISTS, held_out_sequences


def held_out_sequence(seed: int) -> str:
    """One held-out dipeptide, drawn uniformly with ``seed``."""
    held_out = load_split().held_out
    return held_out[int(np.random.default_rng(seed).integers(len(held_out)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--tempering-cpu", type=float, default=240.0, help="CPU s of PT")
    parser.add_argument("--timewarp-budget", type=float, default=120.0, help="wall s of MH")
    parser.add_argument("--heldout-seed", type=int, default=0)
    parser.add_argument(
        "--heldout-sequence",
        help="this held-out dipeptide or tetrapeptide instead of a dipeptide drawn with the seed",
    )
    parser.add_argument(
        "--heldout-model", default="dipeptides", help="model of the held-out comparison"
    )
    parser.add_argument(
        "--heldout-state",
        choices=(rare_state.PHI_POSITIVE, *metrics.RAMACHANDRAN_STATES),
        help="state of the held-out comparison (default: least populated in tempering)",
    )
    parser.add_argument(
        "--heldout-torsion",
        type=int,
        default=0,
        help="which phi (and psi) of the held-out peptide, N- to C-terminus, from 0",
    )
    parser.add_argument("--seed", type=int, default=1, help="Timewarp's random seed")
    parser.add_argument("--skip-alanine", action="store_true")
    parser.add_argument("--skip-heldout", action="store_true")
    args = parser.parse_args()

    cases = []
    if not args.skip_alanine:
        cases.append(("A", "capped", "alanine-dipeptide", 0))
    if not args.skip_heldout:
        sequence = args.heldout_sequence or held_out_sequence(args.heldout_seed)
        if not any(sequence in held_out_sequences(name) for name in HELD_OUT_LISTS):
            parser.error(f"{sequence} is in no split's held-out list ({', '.join(HELD_OUT_LISTS)})")
        cases.append((sequence, "zwitterionic", args.heldout_model, args.heldout_torsion))
    args.output.mkdir(parents=True, exist_ok=True)
    results = {}
    for sequence, termini, model, torsion in cases:
        tempering = rare_state.run_parallel_tempering(
            sequence,
            termini,
            args.output / f"{sequence}-tempering",
            args.tempering_cpu,
            torsion=torsion,
        )
        timewarp = rare_state.run_timewarp(
            sequence, termini, model, args.timewarp_budget, args.seed, torsion
        )
        if sequence == "A":
            state = rare_state.PHI_POSITIVE
        else:
            state = args.heldout_state or rare_state.least_populated_basin(tempering)
        record = rare_state.compare(timewarp, tempering, state)
        record.update(sequence=sequence, termini=termini, model=model, torsion=torsion)
        results[sequence] = record
        np.savez(
            args.output / f"{sequence}-samples.npz",
            **{
                f"{run.name}_{angle}": getattr(run, angle)
                for run in (timewarp, tempering)
                for angle in ("phi", "psi")
            },
        )
        print(rare_state.summary_line(sequence, record), flush=True)
    (args.output / "rare_state.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
