"""The two model formats side by side: TorchScript and AOTInductor packages.

For each case (a bundled model on a molecule, as in bench/model_cost.py) the proposal is
compiled (the time is printed): a transferable model's per-molecule proposal the way
``TimewarpIntegrator(compiled=True)`` does it (``model_file_for_topology(..., compiled=True)``,
into a fresh cache), the alanine-dipeptide model rebuilt as an eager module from its TorchScript
file and compiled with ``openmm_timewarp.models.compiled.export_compiled``. Both files run in
the same process: one TimewarpIntegrator chain per format and batch on the Reference platform
(steps/s, model and energy seconds per step from getModelSeconds / getEnergySeconds), then the
model alone, best wall time per ``forward`` call at each batch size, one thread.  Compiling took
1.5-4 min for the bundled alanine-dipeptide model and 1-2.5 min for the transferable model's
proposal on a di- or tetrapeptide (a busy 2-core machine).

    python bench/compiled_model.py [--cases "alanine dipeptide, bundled model"] [--steps 4000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from model_cost import CALL_BATCHES, CASES, call_times, chain_row, prepared
from openmm import unit

from openmm_timewarp.models.compiled import export_compiled
from openmm_timewarp.models.contract import load_metadata, load_model
from openmm_timewarp.models.resolve import model_file_for_topology
from openmm_timewarp.proposals.ic.families import rebuild_with_reference


def compiled_package(case, topology, positions, script: Path, folder: Path) -> Path:
    """The case's proposal compiled: as the integrator compiles a transferable model's, or the
    bundled alanine-dipeptide model rebuilt as the eager module it was scripted from."""
    if case.model != "alanine-dipeptide":
        return model_file_for_topology(case.model, topology, compiled=True)
    scripted, metadata = load_model(case.model)
    reference = torch.tensor(positions.value_in_unit(unit.nanometer), dtype=torch.float32)
    return export_compiled(
        rebuild_with_reference(scripted.proposal, metadata, topology, reference[None]),
        folder / f"{script.stem}.pt2",
        load_metadata(script),
        reference,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4000, help="MH steps per chain")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[64, 1024], help="independence models' batches"
    )
    parser.add_argument("--cases", nargs="+", default=[CASES[0].label])
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", DeprecationWarning)

    print(f"machine: {platform.node()} ({os.cpu_count()} CPUs), torch {torch.__version__}")
    print(f"load average at start: {os.getloadavg()}")
    rows, calls = [], []
    with tempfile.TemporaryDirectory() as folder:
        # A fresh cache, so each transferable proposal is compiled (and timed) here.
        os.environ["OPENMM_TIMEWARP_CACHE"] = str(Path(folder) / "cache")
        for case in CASES:
            if case.label not in args.cases:
                continue
            topology, system, positions = prepared(case)
            script = model_file_for_topology(case.model, topology)
            start = time.perf_counter()
            package = compiled_package(case, topology, positions, script, Path(folder))
            print(f"{case.label}: export and compile {time.perf_counter() - start:.0f} s")
            independent = case.model == "alanine-dipeptide"
            for name, path in (("TorchScript", script), ("AOTInductor", package)):
                labelled = replace(case, label=f"{case.label}, {name}", model=str(path))
                for batch in args.batches if independent else [None]:
                    row, _ = chain_row(labelled, topology, system, positions, batch, 1, args.steps)
                    rows.append(row)
                    print(row, flush=True)
                times = call_times(str(path), topology, positions)
                calls.append(f"| {labelled.label} | " + " | ".join(f"{t * 1e3:.3f}" for t in times))
    print(
        "\n| case, format | max batch | threads | acceptance | model calls/step | steps/s | "
        "model us/step | energy us/step | model/energy | energy-only bound steps/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nper call, ms (best of 5, one thread), batch {' / '.join(map(str, CALL_BATCHES))}:")
    print("\n".join(f"{line} |" for line in calls))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
