"""Model calls and proposals per second of ChainSampler: C = 1 vs C = 8 alanine-dipeptide chains.

Both runs use the bundled alanine-dipeptide model (its weights and architecture, re-exported here
into a temporary file so that it has ``forward_chains``), the Reference platform for energies,
and the same steps per chain, one after the other in one process:

    python bench/many_chains.py --steps 1000 --threads 1

For each C it prints the wall time, batched model calls (one per round), proposals (MH steps), the
time spent inside the model calls, acceptance, proposals and model calls per second, and the
proposals the model computed per second of model time (each chain's K; those after a chain's first
acceptance in a round are computed but not used). The machines are shared: the load
average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from openmm import app, unit

from openmm_timewarp.data.peptides import create_system
from openmm_timewarp.models.contract import export, load_model
from openmm_timewarp.proposals.ic.families import rebuild_with_reference
from openmm_timewarp.sampling.chains import ChainSampler, ChainSpec
from openmm_timewarp.sampling.ranks import chain_seed

EXAMPLE_PDB = Path(__file__).resolve().parent.parent / "examples" / "alanine-dipeptide.pdb"


def export_bundled_model(path: Path, topology: app.Topology) -> Path:
    """The bundled ``alanine-dipeptide`` model (an ic-independent flow), rebuilt from its weights
    and exported with the current contract."""
    scripted, metadata = load_model("alanine-dipeptide")
    pdb = app.PDBFile(str(EXAMPLE_PDB))
    example = torch.tensor(np.array(pdb.positions.value_in_unit(unit.nanometer))).float()
    model = rebuild_with_reference(scripted.proposal, metadata, topology, example.unsqueeze(0))
    return export(model, path, metadata, example_positions=example)


class TimedModel:
    """Counts and times the batched model calls of a ChainSampler group."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module
        self.noise_dim = module.noise_dim
        self.calls = 0
        self.computed = 0
        self.seconds = 0.0

    def forward_chains(self, positions, atom_types, noise):
        started = time.perf_counter()
        result = self.module.forward_chains(positions, atom_types, noise)
        if positions.is_cuda:
            torch.cuda.synchronize(positions.device)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.computed += noise.shape[0] * noise.shape[1]
        return result


def run(
    model: Path, num_chains: int, steps: int, max_proposals: int, folder: Path, device: str
) -> dict:
    pdb = app.PDBFile(str(EXAMPLE_PDB))
    system = create_system(pdb.topology)
    start = np.array(pdb.positions.value_in_unit(unit.nanometer))
    specs = [
        ChainSpec(f"{index:02d}", system, pdb.topology, start, model, chain_seed(1, index))
        for index in range(num_chains)
    ]
    sampler = ChainSampler(
        specs,
        folder,
        max_proposals=max_proposals,
        trajectory_interval=max(1, steps // 10),
        checkpoint_interval=steps,
        device=device,
    )
    (group,) = sampler.groups
    timed = TimedModel(group.module)
    group.module = timed
    started = time.perf_counter()
    statistics = sampler.run(steps)
    wall = time.perf_counter() - started
    proposals = sum(s.proposals for s in statistics)
    return {
        "chains": num_chains,
        "wall_s": wall,
        "model_calls": timed.calls,
        "model_s": timed.seconds,
        "proposals": proposals,
        "accepted": sum(s.accepted for s in statistics),
        "proposals_per_s": proposals / wall,
        "model_calls_per_s": timed.calls / wall,
        "proposals_per_call": proposals / timed.calls,
        "computed_per_s": timed.computed / timed.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="MH steps per chain")
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-proposals", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda:0")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{args.threads}, model on {args.device}, load average {os.getloadavg()[0]:.1f} at "
          "start")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = export_bundled_model(scratch / "model.pt", app.PDBFile(str(EXAMPLE_PDB)).topology)
        header = (
            "chains | steps/chain | wall s | model calls | model s | proposals/call | "
            "acceptance | proposals/s | model calls/s | computed proposals/model s"
        )
        print(header)
        print("|".join("---" for _ in header.split("|")))
        for num_chains in args.chains:
            folder = scratch / str(num_chains)
            result = run(model, num_chains, args.steps, args.max_proposals, folder, args.device)
            print(
                f"{num_chains} | {args.steps} | {result['wall_s']:.1f} | {result['model_calls']} | "
                f"{result['model_s']:.1f} | {result['proposals_per_call']:.0f} | "
                f"{result['accepted'] / result['proposals']:.3f} | "
                f"{result['proposals_per_s']:.0f} | {result['model_calls_per_s']:.1f} | "
                f"{result['computed_per_s']:.0f}"
            )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
