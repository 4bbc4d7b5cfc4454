"""Many Metropolis-Hastings chains with batched proposals, resumable, split across ranks.

:class:`ChainSampler` runs C chains, each in its own OpenMM Context (same or different molecules,
same or different proposal models). Chains that share a model and a molecule (the same model file
and atom-type codes) form a group; each round, every group makes one ``forward_chains`` call that
draws K proposals for each of its chains (docs/contract.md), and then each chain walks its own K
proposals in order, exactly as :class:`~openmm_timewarp.TimewarpIntegrator` does. The
Metropolis-Hastings rules (rejection of non-finite and chirality-inverting proposals, the
acceptance test with energies from the chain's Context, the first acceptance ending the round
except for an independence proposal, the adaptive K) are those of
:mod:`~openmm_timewarp.sampling.metropolis`, the one place in Python that accepts or rejects.

One proposal is one step; K never exceeds the chain's remaining steps. Each chain has its own seeded
generator for its noise and its acceptance uniforms, and its K depends on its own history only:
a chain gives the same trajectory alone, among other chains, on any rank.

Output, per chain in ``<output>/<name>/`` (:mod:`~openmm_timewarp.sampling.chain_files`): the start,
a trajectory frame every ``trajectory_interval`` steps, statistics and a checkpoint, written every
``checkpoint_interval`` steps. Running the same chains into the same folder again resumes each from
its checkpoint; frames written after that checkpoint are cut off first, so an interrupted job
loses and duplicates nothing.

Ranks: chain i runs on rank ``i mod W`` with the proposal model on ``cuda:LOCAL_RANK`` when CUDA
is available (:mod:`~openmm_timewarp.sampling.ranks`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import unit

from openmm_timewarp.data.energy import thermal_energy
from openmm_timewarp.files import file_sha256
from openmm_timewarp.models.contract import (
    atom_types_for_topology,
    chiral_centres,
    has_forward_chains,
    load_model,
)
from openmm_timewarp.models.resolve import model_file_for_topology
from openmm_timewarp.progress import progress_bar
from openmm_timewarp.sampling import metropolis
from openmm_timewarp.sampling.chain_files import ChainFiles
from openmm_timewarp.sampling.chain_specs import ChainSpec
from openmm_timewarp.sampling.diagnostics import (
    STUCK_AFTER_PROPOSALS,
    is_stuck,
    warn_if_all_non_finite,
    warn_stuck,
)
from openmm_timewarp.sampling.metropolis import Outcome
from openmm_timewarp.sampling.ranks import model_device

__all__ = ["ChainSampler", "ChainSpec", "ChainStatistics"]


@dataclass
class ChainStatistics:
    """A chain's counters, as written to its ``statistics.json``."""

    name: str
    model: str
    seed: int
    steps: int = 0
    proposals: int = 0
    accepted: int = 0
    rejected_non_finite: int = 0
    rejected_chirality: int = 0
    model_calls: int = 0
    frames: int = 0
    wall_time_s: float = 0.0
    acceptance_rate: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.update_rate()

    def update_rate(self) -> None:
        self.acceptance_rate = self.accepted / self.proposals if self.proposals else 0.0

    def to_dict(self) -> dict:
        self.update_rate()
        return asdict(self)


class _Chain:
    """A chain's Context, generator, state, counters and files."""

    def __init__(
        self,
        spec: ChainSpec,
        model_path: Path,
        atom_types: np.ndarray,
        temperature_K: float,
        tau_ps: float,
        directory: Path,
        platform: openmm.Platform,
        trajectory_interval: int,
        model_name: str,
    ) -> None:
        self.spec = spec
        self.model_path = model_path
        self.warned_non_finite = False
        self.atom_types = atom_types
        self.files = ChainFiles(directory, spec.topology, tau_ps, trajectory_interval)
        self.trajectory_interval = trajectory_interval
        self.kT = thermal_energy(temperature_K)
        # What the chain samples, for readers of its folder (training on chains).
        self.record = {
            "temperature_K": temperature_K,
            "model": str(model_path),
            "model_name": model_name,
            "model_sha256": file_sha256(model_path),
            "trajectory_interval": trajectory_interval,
        }
        centres = spec.chiral_centres
        if centres is None:
            centres = chiral_centres(spec.topology)
        self.centres = np.asarray(centres, dtype=np.int64).reshape(-1, 4)
        # The Context only evaluates energies: its integrator never steps.
        self.context = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), platform)
        self.generator = torch.Generator()
        self.statistics = ChainStatistics(spec.name, str(model_path), spec.seed)
        self.positions = np.asarray(spec.positions, dtype=np.float64)
        self.energy = math.nan
        self.stuck_checked = False

    # Output and checkpoints.

    def open(self) -> None:
        """Start the chain, or resume it from its checkpoint (cutting later frames off)."""
        if self.files.has_checkpoint():
            self._load_checkpoint()
            self.files.resume(self.statistics.frames)
        else:
            self.generator.manual_seed(self.spec.seed)
            self.files.start(self.positions, self.spec.system, self.record)
        self.energy = self.energy_of(self.positions)
        if not math.isfinite(self.energy):
            raise ValueError(f"chain {self.spec.name}: the start has a non-finite energy")
        self.save_checkpoint()

    def close(self) -> None:
        self.files.close()

    def _load_checkpoint(self) -> None:
        state = self.files.read_checkpoint()
        recorded = (
            state["seed"],
            state["model"],
            tuple(state["atom_types"]),
            state["trajectory_interval"],
        )
        wanted = (
            self.spec.seed,
            str(self.model_path),
            tuple(self.atom_types.tolist()),
            self.trajectory_interval,
        )
        if recorded != wanted:
            raise ValueError(
                f"{self.files.directory} holds chain {self.spec.name!r} with another seed, model, "
                f"molecule or trajectory interval (seed {state['seed']}, model {state['model']}, "
                f"interval {state['trajectory_interval']}); resume it with the same settings or "
                "write to another folder"
            )
        self.positions = state["positions"].numpy()
        self.generator.set_state(state["generator"])
        self.statistics = ChainStatistics(**state["statistics"])

    def save_checkpoint(self) -> None:
        """Write the checkpoint and the statistics (:meth:`ChainFiles.save`)."""
        statistics = self.statistics.to_dict()
        statistics.pop("acceptance_rate")
        state = {
            "seed": self.spec.seed,
            "model": str(self.model_path),
            "atom_types": self.atom_types.tolist(),
            "trajectory_interval": self.trajectory_interval,
            "positions": torch.from_numpy(self.positions),
            "generator": self.generator.get_state(),
            "statistics": statistics,
        }
        self.files.save(state, self.statistics.to_dict())

    # Metropolis-Hastings (the rules: sampling.metropolis).

    def energy_of(self, positions: np.ndarray) -> float:
        self.context.setPositions(positions)
        energy = self.context.getState(getEnergy=True).getPotentialEnergy()
        return energy.value_in_unit(unit.kilojoule_per_mole)

    def batch_size(self, max_proposals: int, steps: int, independent: bool) -> int:
        """This round's K (:func:`~openmm_timewarp.sampling.metropolis.batch_size`), capped by
        the steps left to ``steps``."""
        stats = self.statistics
        return metropolis.batch_size(
            stats.accepted, stats.proposals, max_proposals, independent, steps - stats.steps
        )

    def draw_noise(self, num_proposals: int, noise_dim: int) -> torch.Tensor:
        num_atoms = self.positions.shape[0]
        return torch.randn(num_proposals, num_atoms, noise_dim, generator=self.generator)

    def walk(self, proposals: np.ndarray, log_q_ratios: np.ndarray, independent: bool) -> None:
        """Walk ``proposals [K, N, 3]`` (:func:`~openmm_timewarp.sampling.metropolis.walk`),
        counting each outcome and writing a frame every ``trajectory_interval`` steps."""
        stats = self.statistics
        stats.model_calls += 1
        steps = metropolis.walk(
            self.positions,
            self.energy,
            proposals,
            log_q_ratios,
            kT=self.kT,
            centres=self.centres,
            independent=independent,
            energy_of=self.energy_of,
            uniform=self.uniform,
        )
        for step in steps:
            stats.steps += 1
            stats.proposals += 1
            if step.outcome is Outcome.ACCEPTED:
                stats.accepted += 1
            elif step.outcome is Outcome.NON_FINITE:
                stats.rejected_non_finite += 1
            elif step.outcome is Outcome.CHIRALITY:
                stats.rejected_chirality += 1
            self.positions, self.energy = step.positions, step.energy
            if stats.steps % self.trajectory_interval == 0:
                self.files.write_frame(self.positions)
                stats.frames += 1

    def uniform(self) -> float:
        return float(torch.rand(1, generator=self.generator, dtype=torch.float64))


@dataclass
class _Group:
    """Chains that share a proposal model and atom types: one model call per round."""

    module: torch.jit.ScriptModule
    noise_dim: int
    independent: bool
    atom_types: torch.Tensor
    chains: list[_Chain]


class ChainSampler:
    """Runs chains (:class:`ChainSpec`) with one batched model call per group and round.

    Parameters
    ----------
    chains
        The chains this process runs (see :func:`chains_for_rank`); names must be distinct.
    output
        Folder of the chains' folders; chains found there are resumed.
    temperature
        Quantity or kelvin; defaults to each model's training temperature.
    max_proposals
        The largest K (proposals per chain per model call).
    trajectory_interval
        Steps between trajectory frames.
    checkpoint_interval
        Steps between checkpoints of each chain (and at the end of :meth:`run`).
    platform
        The OpenMM platform of the chains' Contexts (default Reference).
    device
        Where the proposal models run; default :func:`model_device`.
    compiled
        Run a transferable model's proposals as AOTInductor packages compiled for this CPU
        (``TimewarpIntegrator``'s ``compiled``); a chain resumes only with the format it began in.
    """

    def __init__(
        self,
        chains: Sequence[ChainSpec],
        output: str | os.PathLike,
        temperature: unit.Quantity | float | None = None,
        max_proposals: int = 64,
        trajectory_interval: int = 100,
        checkpoint_interval: int = 10_000,
        platform: str = "Reference",
        device: torch.device | str | None = None,
        compiled: bool = False,
    ) -> None:
        names = [spec.name for spec in chains]
        if len(set(names)) != len(names):
            raise ValueError("every chain needs its own name (its output folder)")
        for name, value in (
            ("max_proposals", max_proposals),
            ("trajectory_interval", trajectory_interval),
            ("checkpoint_interval", checkpoint_interval),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive number of steps, got {value}")
        self.output = Path(output)
        self.max_proposals = max_proposals
        self.checkpoint_interval = checkpoint_interval
        self.device = torch.device(device) if device is not None else model_device()
        if compiled and self.device.type != "cpu":
            raise ValueError(
                f"compiled proposals are compiled for the CPU; run them there (device='cpu') or "
                f"use TorchScript on {self.device} (compiled=False)"
            )
        openmm_platform = openmm.Platform.getPlatformByName(platform)
        self.groups: list[_Group] = []
        self.chains: list[_Chain] = []  # in the order given
        modules: dict[Path, tuple[torch.jit.ScriptModule, object]] = {}
        groups: dict[tuple, _Group] = {}
        for spec in chains:
            metropolis.check_system(
                spec.system, spec.positions, spec.topology, f"chain {spec.name}"
            )
            path = model_file_for_topology(spec.model, spec.topology, compiled)
            if path not in modules:
                modules[path] = _load_chain_model(path, self.device)
            module, metadata = modules[path]
            atom_types = spec.atom_types
            if atom_types is None:
                atom_types = atom_types_for_topology(spec.topology, metadata)
            atom_types = np.asarray(atom_types, dtype=np.int64).reshape(-1)
            num_particles = spec.system.getNumParticles()
            if len(atom_types) != num_particles:
                raise ValueError(
                    f"chain {spec.name}: {len(atom_types)} atom types for {num_particles} particles"
                )
            if metadata.num_atoms is not None and metadata.num_atoms != num_particles:
                raise ValueError(
                    f"chain {spec.name}: the model {path} is for {metadata.num_atoms} atoms, the "
                    f"System has {num_particles}"
                )
            if temperature is None:
                temperature_K = metadata.temperature_K
            elif unit.is_quantity(temperature):
                temperature_K = temperature.value_in_unit(unit.kelvin)
            else:
                temperature_K = float(temperature)
            if not temperature_K > 0:
                raise ValueError(f"the temperature must be positive, got {temperature_K} K")
            chain = _Chain(
                spec,
                path,
                atom_types,
                temperature_K,
                metadata.tau_ps,
                self.output / spec.name,
                openmm_platform,
                trajectory_interval,
                metadata.name,
            )
            key = (path, tuple(atom_types.tolist()))
            if key not in groups:
                groups[key] = _Group(
                    module,
                    int(module.noise_dim),
                    bool(getattr(module, "independent", False)),
                    torch.from_numpy(atom_types).to(self.device),
                    [],
                )
                self.groups.append(groups[key])
            groups[key].chains.append(chain)
            self.chains.append(chain)

    def run(self, steps: int, progress: bool = False) -> list[ChainStatistics]:
        """Advance every chain to ``steps`` steps in all (resuming where it stands) and return
        their statistics."""
        if steps < 0:
            raise ValueError(f"steps must be a non-negative number, got {steps}")
        chains = self.chains
        try:
            for chain in chains:
                chain.open()
            done = sum(min(chain.statistics.steps, steps) for chain in chains)
            bar = progress_bar(
                total=steps * len(chains), initial=done, enabled=progress, unit="step"
            )
            started = time.perf_counter()
            last_time = {id(chain): started for chain in chains}
            with bar:
                while True:
                    active_groups = [
                        [chain for chain in group.chains if chain.statistics.steps < steps]
                        for group in self.groups
                    ]
                    if not any(active_groups):
                        break
                    for group, active in zip(self.groups, active_groups, strict=True):
                        if not active:
                            continue
                        before = [chain.statistics.steps for chain in active]
                        self._round(group, active, steps)
                        now = time.perf_counter()
                        for chain, steps_before in zip(active, before, strict=True):
                            if not chain.warned_non_finite:
                                chain.warned_non_finite = warn_if_all_non_finite(
                                    f"chain {chain.spec.name}",
                                    chain.statistics.proposals,
                                    chain.statistics.rejected_non_finite,
                                )
                            chain.statistics.wall_time_s += now - last_time[id(chain)]
                            last_time[id(chain)] = now
                            steps_after = chain.statistics.steps
                            bar.update(steps_after - steps_before)
                            self._check_stuck(chain)
                            interval = self.checkpoint_interval
                            if steps_after >= steps or (
                                steps_after // interval > steps_before // interval
                            ):
                                chain.save_checkpoint()
        finally:
            for chain in chains:
                chain.close()
        return [chain.statistics for chain in chains]

    @staticmethod
    def _check_stuck(chain: _Chain) -> None:
        """Warn once when the chain has accepted none of its first proposals (diagnostics)."""
        stats = chain.statistics
        if not chain.stuck_checked and stats.proposals >= STUCK_AFTER_PROPOSALS:
            chain.stuck_checked = True
            if is_stuck(stats.proposals, stats.accepted):
                warn_stuck(f"chain {stats.name}", stats.proposals, stats.rejected_non_finite)

    def _round(self, group: _Group, active: list[_Chain], steps: int) -> None:
        sizes = [chain.batch_size(self.max_proposals, steps, group.independent) for chain in active]
        noise = [
            chain.draw_noise(size, group.noise_dim)
            for chain, size in zip(active, sizes, strict=True)
        ]
        positions = torch.from_numpy(np.stack([chain.positions for chain in active])).float()
        if len(set(sizes)) == 1:
            noise = torch.stack(noise)
        else:
            # Chains with different K: one row per proposal (its chain's state, B = 1), so that
            # no proposal is computed only to be thrown away, as padding to the largest K would.
            positions = positions.repeat_interleave(torch.tensor(sizes), dim=0)
            noise = torch.cat(noise).unsqueeze(1)
        # K changes from round to round; TorchScript's optimising executor re-specialises for
        # every new shape, which made the model calls 5x slower on a GPU (docs/chains.md).
        with torch.no_grad(), torch.jit.optimized_execution(False):
            proposals, log_q_ratios = group.module.forward_chains(
                positions.to(self.device), group.atom_types, noise.to(self.device)
            )
        proposals = proposals.to("cpu", torch.float64).reshape(-1, *proposals.shape[2:]).numpy()
        log_q_ratios = log_q_ratios.to("cpu", torch.float64).reshape(-1).numpy()
        offsets = np.cumsum([0, *sizes])
        for chain, start, end in zip(active, offsets[:-1], offsets[1:], strict=True):
            chain.walk(proposals[start:end], log_q_ratios[start:end], group.independent)


def _load_chain_model(path: Path, device: torch.device) -> tuple[torch.jit.ScriptModule, object]:
    module, metadata = load_model(path)
    if not has_forward_chains(module):
        raise ValueError(
            f"the proposal model {path} has no forward_chains (it was exported by an earlier "
            "version of openmm-timewarp): re-export it with openmm_timewarp.export to sample "
            "many chains"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = module.to(device)
    return module.eval(), metadata
