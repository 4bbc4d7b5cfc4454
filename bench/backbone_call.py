"""What one call of the ``ic-backbone`` proposal costs at the small batches the integrator uses.

The bundled ``peptides`` model is state-dependent, so the integrator calls it once per accepted
step with an adaptive batch of about 1-16 proposals; at these sizes the cost is the number of
small ATen ops (dispatch overhead), not arithmetic. For each molecule (the last frame of a
reference run's trajectory) and each batch B, this prints the best process
CPU time per ``forward_chains`` call over several windows, eager and scripted (one thread, the
profiling executor off as in the plugin), and the number of ATen ops one eager call runs
(torch.profiler).

    python bench/backbone_call.py --structures /work/data/benchmark/reference-KT-... ...
        [--batches 1 4 16] [--calls 50] [--windows 5]

Each folder holds ``topology.pdb`` and ``trajectory.dcd`` (``timewarp simulate``'s output).
"""

from __future__ import annotations

import argparse
import warnings

import mdtraj
import torch
from _timing import best_time_per_call
from openmm import app

from openmm_timewarp.models.resolve import load_model
from openmm_timewarp.proposals.backbone.proposal import backbone_proposal


def _molecules(folders: list[str]) -> list[tuple[str, app.Topology, torch.Tensor]]:
    molecules = []
    for folder in folders:
        pdb = f"{folder}/topology.pdb"
        frame = mdtraj.load(f"{folder}/trajectory.dcd", top=pdb).xyz[-1]
        name = folder.rstrip("/").split("/")[-1].split("-")[1]
        molecules.append((name, app.PDBFile(pdb).topology, torch.from_numpy(frame).double()))
    return molecules


def _best_ms(call, calls: int, windows: int) -> float:
    return 1e3 * best_time_per_call(call, calls, windows, warmup=3)


def _op_count(call) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        call()
    return sum(1 for event in profile.events() if event.name.startswith("aten::"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", nargs="+", required=True)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--windows", type=int, default=5)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    torch._C._jit_set_profiling_executor(False)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    network, _ = load_model("peptides")
    print("molecule atoms B eager_ms scripted_ms aten_ops_eager")
    for name, topology, positions in _molecules(arguments.structures):
        proposal = backbone_proposal(network, topology)
        scripted = torch.jit.script(proposal)
        num_atoms = topology.getNumAtoms()
        types = torch.arange(num_atoms)
        generator = torch.Generator().manual_seed(0)
        for batch in arguments.batches:
            noise = torch.randn(1, batch, num_atoms, 3, dtype=torch.float64, generator=generator)

            def eager(model=proposal, x=positions[None], types=types, noise=noise) -> None:
                model.forward_chains(x, types, noise)

            def script(model=scripted, x=positions[None], types=types, noise=noise) -> None:
                model.forward_chains(x, types, noise)

            print(
                name,
                num_atoms,
                batch,
                f"{_best_ms(eager, arguments.calls, arguments.windows):.3f}",
                f"{_best_ms(script, arguments.calls, arguments.windows):.3f}",
                _op_count(eager),
                flush=True,
            )


if __name__ == "__main__":
    main()
