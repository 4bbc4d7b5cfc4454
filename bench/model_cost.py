"""What a proposal costs against the energy that judges it, in the chain and per call.

For each case (a bundled model on a molecule) and each setting (max proposal batch, torch
threads), one TimewarpIntegrator chain on the Reference platform runs ``--steps`` MH steps (at
least five batches) after a warm-up, and the table gives steps/s (wall clock), the model's and
the energies' seconds per step (getModelSeconds / getEnergySeconds), their ratio, and the
energy-only bound (1 / energy time per step: the speed of a chain whose model cost nothing).
Then the model alone: the best wall time per call of ``forward`` at each batch size, one
thread, the profiling executor off as in the plugin.  Everything runs in one process, one case
after the other, so the figures of one run are side by side.

Cases: the bundled ``alanine-dipeptide`` model (internal-coordinate independence proposal) on
alanine dipeptide, and the transferable ``dipeptides`` model on alanine dipeptide, a zwitterionic
dipeptide and a zwitterionic tetrapeptide; the transferable ``peptides`` model (ic-backbone) on a
zwitterionic dipeptide and tetrapeptide (``--cases`` picks cases by label).

    python bench/model_cost.py [--steps 4000] [--batches 64 256 1024 4096] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from dataclasses import dataclass

import openmm
import torch
from _timing import best_time_per_call
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.models.contract import atom_types_for_topology, load_model

TEMPERATURE = 310.0 * unit.kelvin
CALL_BATCHES = (1, 16, 64, 256, 1024, 4096)


@dataclass(frozen=True)
class Case:
    label: str
    model: str
    sequence: str
    termini: str


CASES = (
    Case("alanine dipeptide, bundled model", "alanine-dipeptide", "A", "capped"),
    Case("alanine dipeptide, transferable model", "dipeptides", "A", "capped"),
    Case("dipeptide KD, transferable model", "dipeptides", "KD", "zwitterionic"),
    Case("tetrapeptide AKDL, transferable model", "dipeptides", "AKDL", "zwitterionic"),
    Case("dipeptide KT, peptides model", "peptides", "KT", "zwitterionic"),
    Case("tetrapeptide FSGW, peptides model", "peptides", "FSGW", "zwitterionic"),
)


def prepared(case: Case) -> tuple[app.Topology, openmm.System, object]:
    """Topology, System and minimised positions of the case's molecule."""
    peptide = build_peptide(case.sequence, termini=case.termini)
    system = create_system(peptide.topology)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(peptide.positions)
    openmm.LocalEnergyMinimizer.minimize(context, maxIterations=500)
    return peptide.topology, system, context.getState(getPositions=True).getPositions()


def chain_row(case, topology, system, positions, batch, threads, steps) -> tuple[str, str]:
    """One chain; returns its table row and the per-molecule model file it ran."""
    integrator = TimewarpIntegrator(
        case.model,
        TEMPERATURE,
        topology=topology,
        seed=2026,
        max_proposal_batch=batch,
        model_threads=threads,
    )
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    integrator.step(max(200, steps // 10))  # warm-up: first calls, batch adaptation
    integrator.resetStatistics()
    steps = max(steps, 5 * integrator.getMaxProposalBatch())  # several calls at any batch
    start = time.perf_counter()
    integrator.step(steps)
    wall = time.perf_counter() - start
    model = integrator.getModelSeconds() / steps
    energy = integrator.getEnergySeconds() / steps
    row = (
        f"| {case.label} | {integrator.getMaxProposalBatch()} | {threads} | "
        f"{integrator.getAcceptanceRate():.3f} | {integrator.getNumModelCalls() / steps:.4f} | "
        f"{steps / wall:,.0f} | {model * 1e6:.1f} | {energy * 1e6:.1f} | {model / energy:.2f} | "
        f"{1 / energy:,.0f} |"
    )
    return row, integrator.getModelPath()


def call_times(model_path: str, topology: app.Topology, positions) -> list[float]:
    """Best wall seconds per forward call at each of CALL_BATCHES (one torch thread)."""
    module, metadata = load_model(model_path)
    types = torch.tensor(atom_types_for_topology(topology, metadata))
    current = torch.tensor(positions.value_in_unit(unit.nanometer), dtype=torch.float32)
    times = []
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for batch in CALL_BATCHES:
            noise = torch.randn(batch, len(current), module.noise_dim)
            call = functools.partial(module, current, types, noise)
            calls = max(3, 256 // batch)
            times.append(best_time_per_call(call, calls, 5, warmup=1, clock=time.perf_counter))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4000, help="MH steps per chain")
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=[64, 256, 1024, 4096],
        help="max proposal batches for independence models (state-dependent: the default)",
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="model threads")
    parser.add_argument("--cases", nargs="+", default=[case.label for case in CASES])
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"machine: {platform.node()} ({os.cpu_count()} CPUs), torch {torch.__version__}")
    print(f"load average at start: {os.getloadavg()}")
    print(
        "\n| case | max batch | threads | acceptance | model calls/step | steps/s | "
        "model us/step | energy us/step | model/energy | energy-only bound steps/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    model_files = {}
    for case in CASES:
        if case.label not in args.cases:
            continue
        topology, system, positions = prepared(case)
        independent = case.model == "alanine-dipeptide"
        for threads in args.threads:
            for batch in args.batches if independent else [None]:
                row, path = chain_row(case, topology, system, positions, batch, threads, args.steps)
                print(row, flush=True)
                model_files[case.label] = (path, topology, positions)
    print(f"\nper call, ms (best of 5, one thread), batch {' / '.join(map(str, CALL_BATCHES))}:")
    for label, (path, topology, positions) in model_files.items():
        times = call_times(path, topology, positions)
        print(f"| {label} | " + " | ".join(f"{t * 1e3:.3f}" for t in times) + " |", flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
