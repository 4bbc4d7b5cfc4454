"""Overhead of TimewarpIntegrator itself, on alanine dipeptide on the Reference platform.

One MH iteration costs one energy evaluation plus its share of a model call (one call serves a
batch of proposals).  This script measures, in the same run, the time per integrator step and the
two components on their own (process CPU time, which load from other processes on a shared
machine disturbs far less than wall time), and prints

    overhead = time per step / (model calls per step x time per model call + time per energy) - 1

The proposal model is a trivial Gaussian random walk, so the model's own cost is small and the
integrator's bookkeeping is as visible as it can be.  Energies are timed through
Context.setPositions + Context.getState(getEnergy=True), at alternating positions as in the
chain, minus the same calls on a copy of the System without forces, so Python's overhead is not
counted as energy time.

Usage: python bench/integrator_overhead.py [--steps 1000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import torch
from _timing import best_time_per_call
from openmm import unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.models.contract import atom_types_for_topology, load_model
from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal

TEMPERATURE = 310.0 * unit.kelvin
WALK_SIGMA_NM = 0.001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="integrator steps per block")
    parser.add_argument("--repeats", type=int, default=30, help="interleaved blocks")
    args = parser.parse_args()
    torch.set_num_threads(1)

    peptide = build_peptide("A")
    system = create_system(peptide.topology)
    reference = openmm.Platform.getPlatformByName("Reference")
    elements = sorted({atom.element.symbol for atom in peptide.topology.atoms()})

    with tempfile.TemporaryDirectory() as folder:
        model_path = export_simple_proposal(
            GaussianRandomWalk(WALK_SIGMA_NM),
            Path(folder) / "walk.pt",
            num_atoms=system.getNumParticles(),
            temperature_K=TEMPERATURE.value_in_unit(unit.kelvin),
            atom_types=elements,
            name="alanine-dipeptide-random-walk",
        )
        integrator = TimewarpIntegrator(
            model_path, TEMPERATURE, topology=peptide.topology, seed=2026
        )
        context = openmm.Context(system, integrator, reference)
        context.setPositions(peptide.positions)
        openmm.LocalEnergyMinimizer.minimize(context, maxIterations=200)
        integrator.step(args.steps)  # settle the adaptive batch size

        forceless = openmm.System()
        for i in range(system.getNumParticles()):
            forceless.addParticle(system.getParticleMass(i))
        empty = openmm.Context(forceless, openmm.VerletIntegrator(0.001), reference)
        empty.setPositions(peptide.positions)

        # Two nearby configurations in turn, so every evaluation is at new positions.
        start = context.getState(getPositions=True).getPositions(asNumpy=True)._value
        configurations = itertools.cycle([start, start + 0.001])

        def energy_at_next(target: openmm.Context) -> None:
            target.setPositions(next(configurations))
            target.getState(getEnergy=True)

        module, metadata = load_model(model_path)
        types = torch.tensor(atom_types_for_topology(peptide.topology, metadata))
        positions = torch.tensor(start, dtype=torch.float32)

        # Interleaved in short blocks, so that load from other processes hits all parts alike.
        integrator.resetStatistics()
        batch = integrator.getProposalBatchSize()
        step_times, energy_times, model_times = [], [], []
        for _ in range(args.repeats):
            begin = time.process_time()
            integrator.step(args.steps)
            step_times.append((time.process_time() - begin) / args.steps)
            bare = best_time_per_call(lambda: energy_at_next(empty), args.steps // 4, 1)
            full = best_time_per_call(lambda: energy_at_next(context), args.steps // 4, 1)
            energy_times.append(full - bare)
            noise = torch.randn(batch, len(start), module.noise_dim)
            with torch.no_grad():
                model_times.append(
                    best_time_per_call(
                        functools.partial(module, positions, types, noise), args.steps // 20, 1
                    )
                )
        calls_per_step = integrator.getNumModelCalls() / integrator.getNumProposed()
        acceptance = integrator.getAcceptanceRate()

    step_times, energy_times, model_times = map(np.array, (step_times, energy_times, model_times))
    ratios = step_times / (calls_per_step * model_times + energy_times) - 1
    step_time, energy_time, model_time = step_times.min(), energy_times.min(), model_times.min()
    components = calls_per_step * model_time + energy_time
    print(f"machine: {platform.node()} ({platform.machine()}), torch threads 1")
    print(f"alanine dipeptide, {system.getNumParticles()} atoms, Reference platform")
    print(f"{args.repeats} interleaved blocks of {args.steps} steps; fastest block of each part:")
    print(f"acceptance {acceptance:.3f}, batch {batch}, model calls per step {calls_per_step:.3f}")
    print(f"time per step:              {step_time * 1e6:8.2f} us")
    print(f"time per model call:        {model_time * 1e6:8.2f} us")
    print(f"time per energy evaluation: {energy_time * 1e6:8.2f} us")
    print(f"model (amortised) + energy: {components * 1e6:8.2f} us")
    print(f"overhead ratio (fastest blocks):       {step_time / components - 1:6.1%}")
    print(
        f"overhead ratio (median over blocks):   {np.median(ratios):6.1%} "
        f"(quartiles {np.quantile(ratios, 0.25):.1%}, {np.quantile(ratios, 0.75):.1%})"
    )


if __name__ == "__main__":
    main()
