"""``timewarp sample``: many resumable Metropolis-Hastings chains, one batched model call per round
(docs/chains.md); the work is :class:`~openmm_timewarp.sampling.chains.ChainSampler`'s."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from openmm_timewarp.data.peptides import TERMINI
from openmm_timewarp.sampling.chain_specs import peptide_chains
from openmm_timewarp.sampling.chains import ChainSampler
from openmm_timewarp.sampling.diagnostics import is_stuck, stuck_message
from openmm_timewarp.sampling.ranks import chains_for_rank, process_rank


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``timewarp sample`` (many chains, one batched model call per round)."""
    parser = subparsers.add_parser(
        "sample",
        help="run many resumable Timewarp chains with batched proposals (one rank per device)",
        description="Run CHAINS_PER_PEPTIDE Metropolis-Hastings chains of each peptide with one "
        "batched model call per round, each chain writing OUTPUT/<index>-<peptide>/ "
        "(trajectory.dcd, topology.pdb, statistics.json, checkpoint.pt). Running the same "
        "command again resumes every chain. Under torchrun, a SLURM job array or srun, chain i "
        "runs on rank i mod (number of ranks); see docs/chains.md.",
    )
    parser.add_argument("model", help="proposal-model file or bundled name")
    parser.add_argument(
        "peptides", nargs="+", metavar="PEPTIDE", help="PDB file or one-letter sequence"
    )
    parser.add_argument("--chains-per-peptide", type=int, default=1)
    parser.add_argument("--steps", type=int, required=True, help="MH steps (proposals) per chain")
    parser.add_argument("--seed", type=int, default=1, help="chain i is seeded from (seed, i)")
    parser.add_argument("--temperature", type=float, help="kelvin (default: the model's)")
    parser.add_argument("--termini", choices=TERMINI, default="capped", help="for sequences")
    parser.add_argument(
        "--system",
        type=Path,
        metavar="SYSTEM_XML",
        help="your own System for the one PEPTIDE (XmlSerializer, same atoms in the same order); "
        "default: amber14-all + OBC2 as a native GBSAOBCForce",
    )
    parser.add_argument("--trajectory-interval", type=int, default=100, help="steps per frame")
    parser.add_argument("--checkpoint-interval", type=int, default=10_000, help="steps")
    parser.add_argument("--max-proposals", type=int, default=64, help="largest K per model call")
    parser.add_argument("--platform", default="Reference", help="OpenMM platform of the chains")
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="run a transferable model's proposals as AOTInductor packages compiled for this "
        "CPU (once per molecule, about a minute; cached)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="threads of the proposal models on the CPU (default 1, the fastest measured: "
        "two processes with torch's default threads on two cores ran 6x slower, "
        "docs/training.md)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.set_defaults(handler=_sample_command)


def _sample_command(args: argparse.Namespace) -> int:
    if args.torch_threads < 1:
        raise ValueError(f"--torch-threads must be at least 1, got {args.torch_threads}")
    torch.set_num_threads(args.torch_threads)
    rank, world_size = process_rank()
    specs = peptide_chains(
        args.model, args.peptides, args.chains_per_peptide, args.seed, args.termini, args.system
    )
    mine = chains_for_rank(specs, rank, world_size)
    if not mine:
        print(f"rank {rank} of {world_size}: no chains ({len(specs)} in all)")
        return 0
    sampler = ChainSampler(
        mine,
        args.output,
        temperature=args.temperature,
        max_proposals=args.max_proposals,
        trajectory_interval=args.trajectory_interval,
        checkpoint_interval=args.checkpoint_interval,
        platform=args.platform,
        compiled=args.compiled,
    )
    for statistics in sampler.run(args.steps, progress=rank == 0 and not args.no_progress):
        print(
            f"{statistics.name}: {statistics.steps} steps, acceptance "
            f"{statistics.acceptance_rate:.3f}, {statistics.model_calls} model calls, "
            f"{statistics.frames} frames"
        )
        if is_stuck(statistics.proposals, statistics.accepted):
            message = stuck_message(
                statistics.name, statistics.proposals, statistics.rejected_non_finite
            )
            print(f"warning: {message}")
    return 0
