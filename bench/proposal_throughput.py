"""Proposals per second of proposal-model families vs batch size, and parameter counts.

Each family builds a contract module (docs/contract.md) for a molecule; the benchmark scripts it
(as the integrator runs it) and times ``forward(positions, atom_types, noise)`` at each batch size,
logQRatio included. A family is one entry of :data:`FAMILIES`; add a builder there to benchmark a
new kind of proposal on the same molecules.

    python bench/proposal_throughput.py --threads 2

The machines are shared: each rate is the best of ``--repeats`` timed windows, the load average is
printed with the results, and rates per CPU second of this process are given beside the wall-clock
rates (with more than one thread they include the threads' spin-waiting).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from openmm import unit
from tqdm import tqdm

from openmm_timewarp.data.peptides import build_peptide
from openmm_timewarp.proposals.cartesian import PRESETS, TimewarpProposal, count_parameters, preset
from openmm_timewarp.proposals.ic.families import ICMixtureProposal, proposal_for_frames


@dataclass(frozen=True)
class Molecule:
    """A molecule to benchmark on: the flow families need only its atom count."""

    name: str
    num_atoms: int


@dataclass
class BenchmarkCase:
    """A proposal module ready to call, with the state it proposes from."""

    module: torch.nn.Module
    positions: torch.Tensor
    atom_types: torch.Tensor


@dataclass(frozen=True)
class ProposalFamily:
    name: str
    description: str
    build: Callable[[Molecule], BenchmarkCase]


MOLECULES = {
    "alanine-dipeptide": Molecule("alanine-dipeptide", 22),
    # Throughput depends on the atom count only, so a tetrapeptide's count with random coordinates.
    "tetrapeptide": Molecule("tetrapeptide", 56),
}

ELEMENT_VOCABULARY_SIZE = 5  # H, C, N, O, S


def timewarp_flow_family(preset_name: str) -> ProposalFamily:
    """The Timewarp flow at a preset size, with random weights (speed does not depend on them)."""

    def build(molecule: Molecule) -> BenchmarkCase:
        generator = torch.Generator().manual_seed(0)
        model = TimewarpProposal(preset(preset_name, ELEMENT_VOCABULARY_SIZE)).eval()
        positions = 0.5 * torch.randn(molecule.num_atoms, 3, generator=generator)
        atom_types = torch.randint(ELEMENT_VOCABULARY_SIZE, (molecule.num_atoms,))
        return BenchmarkCase(model, positions, atom_types)

    return ProposalFamily(
        f"timewarp-flow/{preset_name}", f"Timewarp flow, preset {preset_name}", build
    )


# IC proposals need a real molecule: capped peptides with the molecules' atom counts.
IC_SEQUENCES = {"alanine-dipeptide": "A", "tetrapeptide": "AAAT"}


def internal_coordinate_family(kind: str) -> ProposalFamily:
    """An IC proposal at the default size (4 spline couplings, 2 x 128), untrained weights."""

    def build(molecule: Molecule) -> BenchmarkCase:
        modeller = build_peptide(IC_SEQUENCES[molecule.name])
        positions = torch.tensor(
            np.array(modeller.positions.value_in_unit(unit.nanometer)), dtype=torch.float32
        )

        def component(family: str) -> torch.nn.Module:
            return proposal_for_frames(family, modeller.topology, positions.unsqueeze(0))

        if kind == "mixture":
            conditional, independent = component("ic-conditional"), component("ic-independent")
            module = ICMixtureProposal(conditional, independent, 0.5)
        else:
            module = component(f"ic-{kind}")
        return BenchmarkCase(module.eval(), positions, torch.arange(len(positions)))

    return ProposalFamily(f"ic-{kind}", f"internal-coordinate proposal, {kind}", build)


FAMILIES: dict[str, ProposalFamily] = {
    family.name: family
    for family in (
        timewarp_flow_family("cpu-small"),
        *(internal_coordinate_family(kind) for kind in ("conditional", "independent", "mixture")),
    )
}


def proposals_per_second(
    case: BenchmarkCase, batch_size: int, seconds: float, repeats: int
) -> tuple[float, float]:
    """Best rates over ``repeats`` windows of at least ``seconds`` each, after a warm-up: per
    wall-clock second, and per CPU second of this process (less sensitive to other load)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(case.module)
    noise = torch.randn(batch_size, case.positions.shape[0], scripted.noise_dim)
    best_wall, best_cpu = 0.0, 0.0
    with torch.inference_mode():
        for _ in range(3):  # TorchScript profiles and optimises during the first calls
            scripted(case.positions, case.atom_types, noise)
        for _ in range(repeats):
            calls = 0
            start, start_cpu = time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds:
                scripted(case.positions, case.atom_types, noise)
                calls += 1
            proposals = calls * batch_size
            best_wall = max(best_wall, proposals / (time.perf_counter() - start))
            best_cpu = max(best_cpu, proposals / (time.process_time() - start_cpu))
    return best_wall, best_cpu


def preset_parameter_counts() -> dict[str, int]:
    """Parameters of each Timewarp preset (for an element vocabulary), built without memory."""
    counts = {}
    for name in PRESETS:
        with torch.device("meta"):
            counts[name] = count_parameters(TimewarpProposal(preset(name, ELEMENT_VOCABULARY_SIZE)))
    return counts


def processor_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128, 512], metavar="B"
    )
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=list(MOLECULES))
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per point")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.seconds <= 0 or args.repeats < 1:
        parser.error("--threads and --repeats must be positive, --seconds greater than zero")
    if min(args.batch_sizes) < 1:
        parser.error("batch sizes must be positive")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    cases = [(family, molecule) for family in args.families for molecule in args.molecules]
    rows = []
    for family_name, molecule_name in tqdm(cases, desc="families x molecules"):
        case = FAMILIES[family_name].build(MOLECULES[molecule_name])
        rates = [
            proposals_per_second(case, batch, args.seconds, args.repeats)
            for batch in args.batch_sizes
        ]
        rows.append((family_name, MOLECULES[molecule_name], rates))
    load_after = os.getloadavg()[0]

    print(
        f"\nMachine: {processor_name()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} threads; "
        f"load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(
        "\nProposals per wall-clock second (per CPU second of this process in brackets); "
        f"logQRatio included; best of {args.repeats} windows of {args.seconds:g} s:\n"
    )
    print("| family | molecule (atoms) | " + " | ".join(f"B={b}" for b in args.batch_sizes) + " |")
    print("|---|---|" + "---:|" * len(args.batch_sizes))
    for family_name, molecule, rates in rows:
        cells = " | ".join(f"{wall:,.0f} ({cpu:,.0f})" for wall, cpu in rates)
        print(f"| {family_name} | {molecule.name} ({molecule.num_atoms}) | {cells} |")
    print("\nParameters per Timewarp preset:\n")
    print("| preset | parameters |\n|---|---:|")
    for name, count in preset_parameter_counts().items():
        print(f"| {name} | {count:,} |")


if __name__ == "__main__":
    main()
