"""Exploration by many exact chains at once: how soon C Metropolis-Hastings chains together
visit every state of a held-out peptide, against MD's long run.

    python bench/many_chain_exploration.py runs/fresh-tetra/* --chains 1 8 --budget 450 \
        -o runs/many-chain-exploration

Each argument is a `timewarp heldout` folder (its SEQUENCE-TERMINI/result.json read, with the
reference folder and the states it lists). For each peptide and each C in ``--chains``, C chains
of :class:`~openmm_timewarp.sampling.chains.ChainSampler` (the bundled model's compiled
proposals, one batched model call per round; every chain exact MH, seeded ``chain_seed(1, i)``)
start from the held-out run's start (the reference's first frame) and run on one core until their
frames together have visited every state, or for ``--budget`` wall seconds. The clock runs only
while the chains run (rounds of ``--chunk`` steps per chain, each a resumed ``run``, so its
reopening counts against the chains); reading the frames to test for the states does not count,
nor does setting the sampler up, as the held-out runs count no setup either. A frame's time is
interpolated in steps within its chunk. The ratio is MD's time to visit every state (the
held-out result's, from its long run on the same machine) over the chains'; where the chains
never got there, MD's time over the budget bounds it from above, and where MD never did, MD's
run length over the chains' time bounds it from below
(:func:`~openmm_timewarp.evaluation.heldout_table.exploration_ratio`).

OUTPUT/SEQUENCE-TERMINI/C-chains/ holds the chains' folders (resumed by nothing: a rerun starts
them afresh) and exploration.json; OUTPUT/exploration.md the table, a row per peptide and C.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import mdtraj
import numpy as np
import torch

from openmm_timewarp.evaluation import heldout_basins, heldout_table
from openmm_timewarp.evaluation.heldout import REQUEST_FILE, RESULT_FILE
from openmm_timewarp.evaluation.md_reference import load_reference, starting_frames
from openmm_timewarp.evaluation.runs import peptide_system
from openmm_timewarp.evaluation.settings import BenchmarkSettings
from openmm_timewarp.sampling.chain_files import TRAJECTORY_FILE
from openmm_timewarp.sampling.chains import ChainSampler, ChainSpec
from openmm_timewarp.sampling.ranks import chain_seed

FRAME_INTERVAL = 10  # steps, as the held-out Timewarp chain's frames
EXPLORATION_FILE = "exploration.json"


def new_states(folder: Path, topology: mdtraj.Topology, known: int) -> list[str]:
    """The state (residues' basins joined by ``/``) of each frame the chain in ``folder`` saved
    after its first ``known`` ones: only the new frames are read at each check."""
    with mdtraj.formats.DCDTrajectoryFile(str(folder / TRAJECTORY_FILE)) as dcd:
        dcd.seek(known)
        angstrom, _, _ = dcd.read()
    if not len(angstrom):
        return []
    (states,), _ = heldout_basins.states_and_basins([mdtraj.Trajectory(angstrom / 10, topology)])
    return list(states)


def frame_times(frames: int, chunks: list[tuple[int, float]]) -> np.ndarray:
    """Wall seconds at frames 1..``frames`` (frame j at step ``j * FRAME_INTERVAL``), from the
    steps and the running clock at the end of every chunk, linearly within a chunk."""
    steps = np.array([0] + [s for s, _ in chunks], dtype=float)
    clock = np.array([0.0] + [t for _, t in chunks])
    return np.interp(FRAME_INTERVAL * np.arange(1, frames + 1), steps, clock)


def explore(
    result: dict,
    settings: BenchmarkSettings,
    num_chains: int,
    budget_s: float,
    chunk: int,
    output: Path,
) -> dict:
    """Run ``num_chains`` chains until together they visited every state of ``result``."""
    if output.exists():
        shutil.rmtree(output)
    sequence, termini = result["sequence"], result["termini"]
    topology, system = peptide_system(sequence, termini)
    reference = load_reference(Path(result["reference"]), topology, settings)
    start = starting_frames(reference, 1)[0]
    specs = [
        ChainSpec(f"{i:04d}", system, topology, start, result["model"]["name"], chain_seed(1, i))
        for i in range(num_chains)
    ]
    sampler = ChainSampler(
        specs,
        output,
        temperature=settings.temperature_K,
        trajectory_interval=FRAME_INTERVAL,
        compiled=True,
    )
    md_topology = mdtraj.Topology.from_openmm(topology)
    wanted = list(result["states"])
    chunks: list[tuple[int, float]] = []
    clock = 0.0
    states: dict[str, list[str]] = {spec.name: [] for spec in specs}
    found = None
    while found is None and clock < budget_s:
        # Checks grow geometrically: reading every chain's frames costs more as they grow.
        target = max(chunk, (chunks[-1][0] * 3) // 2 if chunks else chunk)
        begin = time.perf_counter()
        statistics = sampler.run(target)
        clock += time.perf_counter() - begin
        chunks.append((statistics[0].steps, clock))
        for name, known in states.items():
            known += new_states(output / name, md_topology, len(known))
        # All chains' frames in the order of their times: the first visit of each state is then
        # the earliest by any chain.
        times = np.concatenate([frame_times(len(known), chunks) for known in states.values()])
        order = np.argsort(times, kind="stable")
        pooled = np.concatenate([np.asarray(known, dtype=str) for known in states.values()])
        found = heldout_table.first_visit_of_all(pooled[order], times[order], wanted)
    # MD's run length at the wall time per ns timed beside the held-out Timewarp run, where
    # timed (its time to find every state is at that speed too).
    md = result["md"]
    md_wall_s = md["simulated_ns"] * md.get("timing", md)["wall_s_per_ns"]
    md_s = result["exploration"]["times_s"][1]
    record = {
        "sequence": sequence,
        "termini": termini,
        "chains": num_chains,
        "states": len(wanted),
        "time_s": found,
        "wall_s": clock,
        "steps_per_chain": chunks[-1][0],
        "proposals_per_s": num_chains * chunks[-1][0] / clock,
        "acceptance": float(np.mean([s.accepted / max(s.proposals, 1) for s in statistics])),
        "single_chain_time_s": result["exploration"]["times_s"][0],
        "md_time_s": md_s,
        "md_wall_s": md_wall_s,
        "ratio": heldout_table.exploration_ratio(found, clock, md_s, md_wall_s, len(wanted)),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (output / EXPLORATION_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _cell(value: float | None) -> str:
    return "never" if value is None else f"{value:.3g}"


def _ratio(ratio: dict) -> str:
    """An exploration ratio with its bound, "-" where there is none."""
    if ratio["ratio"] is None:
        return "-"
    mark = {"lower": ">= ", "upper": "<= "}.get(ratio["bound"] or "", "")
    return f"{mark}{ratio['ratio']:.3g}x"


def table(records: list[dict]) -> str:
    """A row per peptide and C, then the median ratio per C."""
    lines = [
        "| peptide | chains | states | all found, s (one chain in the held-out run) | MD, s |"
        " ratio to MD | proposals/s | acceptance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['sequence']} ({r['termini']}) | {r['chains']} | {r['states']} | "
            f"{_cell(r['time_s'])} ({_cell(r['single_chain_time_s'])}) | {_cell(r['md_time_s'])}"
            f" | {_ratio(r['ratio'])} | {r['proposals_per_s']:.0f} | "
            f"{r['acceptance']:.3f} |"
        )
    for chains in sorted({r["chains"] for r in records}):
        ratios = [r["ratio"]["ratio"] for r in records if r["chains"] == chains]
        lines.append(f"| median, {chains} chains | | | | | {heldout_table.spread(ratios)} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("heldout", nargs="+", type=Path, help="`timewarp heldout` folders")
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--budget", type=float, default=450.0, help="wall seconds per run")
    parser.add_argument("--chunk", type=int, default=200, help="steps per chain between checks")
    parser.add_argument("--termini", default="zwitterionic")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = []
    for folder in args.heldout:
        request = json.loads((folder / REQUEST_FILE).read_text())
        settings = BenchmarkSettings(**request["settings"]["benchmark"])
        for result_file in sorted(folder.glob(f"*-{args.termini}/{RESULT_FILE}")):
            result = json.loads(result_file.read_text())
            sequence = result["sequence"]
            for num_chains in args.chains:
                out = args.output / f"{sequence}-{args.termini}" / f"{num_chains}-chains"
                record = explore(result, settings, num_chains, args.budget, args.chunk, out)
                print(
                    f"{sequence} C={num_chains}: {_cell(record['time_s'])} s, ratio "
                    f"{_ratio(record['ratio'])}",
                    flush=True,
                )
                records.append(record)
                args.output.mkdir(parents=True, exist_ok=True)
                (args.output / "exploration.md").write_text(table(records) + "\n")


if __name__ == "__main__":
    main()
