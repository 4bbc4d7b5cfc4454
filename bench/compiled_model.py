"""Per-call time of the transferable rotor proposal under TorchScript and compiled by AOTInductor.

An experiment toward a compiled model format (not yet a format the plugin loads): the molecule's
``ICRotorProposal`` is scripted as ``export`` does, and exported with ``torch.export`` (dynamic
batch) and compiled with ``torch._inductor.aoti_compile_and_package``; both are timed from
Python, one thread, best of 5 windows of 20 calls, and their outputs compared on the same noise.
``model_order``'s input checks on ``atom_types`` depend on the data, which ``torch.export``
cannot trace; the experiment replaces them by the bare inverse permutation.  Compiling takes
minutes (13 on a busy 2-core machine).

    python bench/compiled_model.py [--sequence KD] [--termini zwitterionic]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
from openmm import unit

from openmm_timewarp.data.peptides import build_peptide
from openmm_timewarp.models.contract import load_model
from openmm_timewarp.proposals.rotors.proposal import rotor_proposal

BATCHES = (1, 16, 64)


def best_ms(module, positions, atom_types, batch: int, noise_dim: int) -> float:
    noise = torch.randn(batch, len(positions), noise_dim)
    module(positions, atom_types, noise)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(20):
            module(positions, atom_types, noise)
        best = min(best, (time.perf_counter() - start) / 20)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequence", default="KD")
    parser.add_argument("--termini", default="zwitterionic")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", DeprecationWarning)

    peptide = build_peptide(args.sequence, termini=args.termini)
    network, _ = load_model("dipeptides")
    proposal = rotor_proposal(network, peptide.topology).eval()
    atom_types = torch.arange(len(proposal.labels))  # the molecule's own labelling
    positions = torch.tensor(peptide.positions.value_in_unit(unit.nanometer), dtype=torch.float32)
    scripted = torch.jit.script(proposal)

    type(proposal).model_order = lambda self, types: torch.zeros_like(types).scatter(
        0, types, self.identity_order
    )
    start = time.perf_counter()
    noise = torch.randn(16, len(positions), proposal.noise_dim)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad(), tempfile.TemporaryDirectory() as folder:
        program = torch.export.export(
            proposal, (positions, atom_types, noise), dynamic_shapes=(None, None, {0: batch})
        )
        package = torch._inductor.aoti_compile_and_package(
            program, package_path=str(Path(folder) / "proposal.pt2")
        )
        compiled = torch._inductor.aoti_load_package(package)
        print(f"export and compile: {time.perf_counter() - start:.0f} s")
        with torch.jit.optimized_execution(False):
            for name, module in (("TorchScript", scripted), ("AOTInductor", compiled)):
                times = [
                    best_ms(module, positions, atom_types, b, proposal.noise_dim) for b in BATCHES
                ]
                print(
                    f"{name}: ms per call at B = {BATCHES}: "
                    + " / ".join(f"{t:.3f}" for t in times)
                )
        expected = scripted(positions, atom_types, noise)
        actual = compiled(positions, atom_types, noise)
    print(
        f"max |difference|: proposals {float((expected[0] - actual[0]).abs().max()):.2e} nm, "
        f"logQRatio {float((expected[1] - actual[1]).abs().max()):.2e}"
    )


if __name__ == "__main__":
    main()
