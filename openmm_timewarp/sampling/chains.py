"""Many Metropolis-Hastings chains with batched proposals, resumable, split across ranks.

:class:`ChainSampler` runs C chains, each in its own OpenMM Context (same or different molecules,
same or different proposal models). Chains that share a model and a molecule (the same model file
and atom-type codes) form a group; each round, every group makes one ``forward_chains`` call that
draws K proposals for each of its chains (docs/contract.md), and then each chain walks its own K
proposals in order, exactly as :class:`~openmm_timewarp.TimewarpIntegrator` does:

- a proposal that is not finite, or that inverts a chiral centre, is rejected and counted;
- otherwise it is accepted with probability ``min(1, exp(-(U(x') - U(x)) / kT + logQRatio))``,
  with energies from the chain's Context;
- the first accepted proposal ends the chain's round and the rest are discarded; while proposals
  are rejected the state does not change, so the batch is exact sequential Metropolis-Hastings.
  For an independence proposal (the model's ``independent`` attribute, docs/contract.md) the round
  goes on through the whole batch, each ratio rebased on the proposal last accepted, as the
  integrator does.

One proposal is one step. K adapts to the chain's running acceptance rate a like the integrator's
batch, ``K = ceil(log 0.1 / log(1 - a))`` between 1 and ``max_proposals`` (the maximum until the
first acceptance, and always for an independence proposal), and never exceeds the chain's
remaining steps. Each chain has its own seeded
generator for its noise and its acceptance uniforms, and its K depends on its own history only:
a chain gives the same trajectory alone, among other chains, on any rank.

Output, per chain in ``<output>/<name>/``: ``topology.pdb`` (the start), ``trajectory.dcd`` (a frame
every ``trajectory_interval`` steps; time in units of the model's nominal tau), ``statistics.json``
(counters and wall time) and ``checkpoint.pt`` (state, generator, counters, frame count), written
every ``checkpoint_interval`` steps. Running the same chains into the same folder again resumes
each from its checkpoint; frames written after that checkpoint are cut off first, so an
interrupted job loses and duplicates nothing.

Ranks: :func:`process_rank` reads torchrun's ``RANK``/``WORLD_SIZE``, a SLURM job array's task id
and count, or SLURM's ``PROCID``/``NTASKS``; chain i runs on rank ``i mod W``
(:func:`chains_for_rank`) with the proposal model on ``cuda:LOCAL_RANK`` when CUDA is available.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import app, unit

from openmm_timewarp.checkpoints import load_checkpoint, save_checkpoint
from openmm_timewarp.data.md import _truncate_dcd, count_dcd_frames
from openmm_timewarp.data.peptides import TERMINI, build_peptide, create_system, read_system
from openmm_timewarp.files import write_json_atomically
from openmm_timewarp.models.contract import (
    atom_types_for_topology,
    chiral_centres,
    has_forward_chains,
    load_model,
)
from openmm_timewarp.models.resolve import model_file_for_topology
from openmm_timewarp.progress import progress_bar
from openmm_timewarp.sampling.diagnostics import (
    STUCK_AFTER_PROPOSALS,
    is_stuck,
    stuck_message,
    warn_if_all_non_finite,
    warn_stuck,
)

__all__ = [
    "ChainSampler",
    "ChainSpec",
    "ChainStatistics",
    "add_sample_parser",
    "chain_seed",
    "chains_for_rank",
    "model_device",
    "peptide_chains",
    "process_rank",
]

TOPOLOGY_FILE = "topology.pdb"
TRAJECTORY_FILE = "trajectory.dcd"
STATISTICS_FILE = "statistics.json"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1


@dataclass
class ChainSpec:
    """One chain: its System, start, proposal model and seed.

    ``atom_types`` and ``chiral_centres`` default to what the model's metadata and the Topology
    give (as for :class:`~openmm_timewarp.TimewarpIntegrator`). ``name`` is the chain's folder.
    """

    name: str
    system: openmm.System
    topology: app.Topology
    positions: np.ndarray
    model: str | os.PathLike
    seed: int
    atom_types: Sequence[int] | None = None
    chiral_centres: Sequence[Sequence[int]] | None = None


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


def chain_seed(seed: int, index: int) -> int:
    """The seed of chain ``index`` of a run with base ``seed``: independent streams per chain,
    the same whatever rank runs the chain."""
    words = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 ^ int(words[1])


def process_rank(environment: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(rank, world size)`` of this process, from torchrun (``RANK``, ``WORLD_SIZE``), a SLURM
    job array (``SLURM_ARRAY_TASK_ID`` counted from ``SLURM_ARRAY_TASK_MIN``,
    ``SLURM_ARRAY_TASK_COUNT``) or SLURM tasks (``SLURM_PROCID``, ``SLURM_NTASKS``); ``(0, 1)``
    outside any launcher."""
    env = os.environ if environment is None else environment
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        rank, world = int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    else:
        rank, world = 0, 1
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"rank {rank} of {world} processes is impossible; check the launcher's environment "
            "(RANK/WORLD_SIZE, SLURM_ARRAY_TASK_ID/COUNT or SLURM_PROCID/NTASKS)"
        )
    return rank, world


def chains_for_rank(chains: Sequence[ChainSpec], rank: int, world_size: int) -> list[ChainSpec]:
    """The chains that rank ``rank`` of ``world_size`` runs: chain i goes to rank i mod W."""
    return list(chains[rank::world_size])


def model_device(environment: Mapping[str, str] | None = None) -> torch.device:
    """``cuda:LOCAL_RANK`` (torchrun; ``SLURM_LOCALID`` under srun) when CUDA is available,
    else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    env = os.environ if environment is None else environment
    local_rank = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0")))
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def signed_volumes(positions: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``dot(b - a, cross(c - a, d - a))`` of each quadruple ``(a, b, c, d)`` of ``centres [M, 4]``
    in configurations ``[..., N, 3]`` -> ``[..., M]``."""
    a, b, c, d = (positions[..., centres[:, k], :] for k in range(4))
    u, v, w = b - a, c - a, d - a
    # The triple product written out: numpy's cross has a large overhead on small arrays.
    return (
        u[..., 0] * (v[..., 1] * w[..., 2] - v[..., 2] * w[..., 1])
        + u[..., 1] * (v[..., 2] * w[..., 0] - v[..., 0] * w[..., 2])
        + u[..., 2] * (v[..., 0] * w[..., 1] - v[..., 1] * w[..., 0])
    )


class _Chain:
    """A chain's Context, generator, state, counters and output files."""

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
    ) -> None:
        self.spec = spec
        self.model_path = model_path
        self.warned_non_finite = False
        self.atom_types = atom_types
        self.directory = directory
        self.trajectory_interval = trajectory_interval
        self.tau_ps = tau_ps
        self.kT = (unit.MOLAR_GAS_CONSTANT_R * temperature_K * unit.kelvin).value_in_unit(
            unit.kilojoule_per_mole
        )
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
        self.dcd_handle = None
        self.dcd: app.DCDFile | None = None
        self.stuck_checked = False

    # Output and checkpoints.

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    def open(self) -> None:
        """Start the chain, or resume it from its checkpoint (cutting later frames off)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        trajectory = self.directory / TRAJECTORY_FILE
        if self.checkpoint_path.exists():
            self._load_checkpoint()
            num_atoms = self.spec.topology.getNumAtoms()
            if not trajectory.exists() or count_dcd_frames(trajectory, num_atoms) < (
                self.statistics.frames
            ):
                raise ValueError(
                    f"{trajectory} is missing or has fewer frames than its checkpoint "
                    f"({self.statistics.frames}); the chain cannot be resumed: move "
                    f"{self.directory} aside and start the chain again"
                )
            _truncate_dcd(trajectory, num_atoms, self.statistics.frames, self.trajectory_interval)
            self.dcd_handle = open(trajectory, "r+b")
            self.dcd = app.DCDFile(
                self.dcd_handle,
                self.spec.topology,
                self.tau_ps * unit.picosecond,
                firstStep=self.trajectory_interval,
                interval=self.trajectory_interval,
                append=True,
            )
        else:
            self.generator.manual_seed(self.spec.seed)
            with open(self.directory / TOPOLOGY_FILE, "w") as handle:
                app.PDBFile.writeFile(self.spec.topology, self.positions * unit.nanometer, handle)
            self.dcd_handle = open(trajectory, "w+b")
            self.dcd = app.DCDFile(
                self.dcd_handle,
                self.spec.topology,
                self.tau_ps * unit.picosecond,
                firstStep=self.trajectory_interval,
                interval=self.trajectory_interval,
            )
        self.energy = self.energy_of(self.positions)
        if not math.isfinite(self.energy):
            raise ValueError(f"chain {self.spec.name}: the start has a non-finite energy")
        self.save_checkpoint()

    def close(self) -> None:
        if self.dcd_handle is not None:
            self.dcd_handle.close()
            self.dcd_handle = None

    def _load_checkpoint(self) -> None:
        state = load_checkpoint(self.checkpoint_path)
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{self.checkpoint_path} has an unknown checkpoint version")
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
                f"{self.directory} holds chain {self.spec.name!r} with another seed, model, "
                f"molecule or trajectory interval (seed {state['seed']}, model {state['model']}, "
                f"interval {state['trajectory_interval']}); resume it with the same settings or "
                "write to another folder"
            )
        self.positions = state["positions"].numpy()
        self.generator.set_state(state["generator"])
        self.statistics = ChainStatistics(**state["statistics"])

    def save_checkpoint(self) -> None:
        """Write the checkpoint (atomically) and the statistics; flushes the trajectory first."""
        self.dcd_handle.flush()
        os.fsync(self.dcd_handle.fileno())
        statistics = self.statistics.to_dict()
        statistics.pop("acceptance_rate")
        state = {
            "version": CHECKPOINT_VERSION,
            "seed": self.spec.seed,
            "model": str(self.model_path),
            "atom_types": self.atom_types.tolist(),
            "trajectory_interval": self.trajectory_interval,
            "positions": torch.from_numpy(self.positions),
            "generator": self.generator.get_state(),
            "statistics": statistics,
        }
        save_checkpoint(state, self.checkpoint_path)
        write_json_atomically(self.directory / STATISTICS_FILE, self.statistics.to_dict())

    # Metropolis-Hastings.

    def energy_of(self, positions: np.ndarray) -> float:
        self.context.setPositions(positions)
        energy = self.context.getState(getEnergy=True).getPotentialEnergy()
        return energy.value_in_unit(unit.kilojoule_per_mole)

    def batch_size(self, max_proposals: int, steps: int, independent: bool) -> int:
        """The integrator's K, capped by the steps left to ``steps``: adaptive, or the maximum
        for an independence proposal (whose batches survive acceptances)."""
        rate = self.statistics.accepted / (self.statistics.proposals + 1)
        size = max_proposals
        if not independent and rate > 0.0:
            size = math.ceil(math.log(0.1) / math.log1p(-rate))
        return max(1, min(size, max_proposals, steps - self.statistics.steps))

    def draw_noise(self, num_proposals: int, noise_dim: int) -> torch.Tensor:
        num_atoms = self.positions.shape[0]
        return torch.randn(num_proposals, num_atoms, noise_dim, generator=self.generator)

    def walk(self, proposals: np.ndarray, log_q_ratios: np.ndarray, independent: bool) -> None:
        """Sequential MH over ``proposals [K, N, 3]`` until the first acceptance; for an
        independence proposal over all of them, each ratio rebased on the last proposal accepted
        (``logQRatio[j] - logQRatio[k]``, as the integrator does, docs/contract.md)."""
        stats = self.statistics
        stats.model_calls += 1
        finite = np.isfinite(log_q_ratios) & np.isfinite(proposals).all(axis=(1, 2))
        inverted = np.zeros(len(proposals), dtype=bool)
        if len(self.centres):
            before = signed_volumes(self.positions, self.centres)
            with np.errstate(invalid="ignore"):
                after = signed_volumes(proposals, self.centres)
            inverted = (before * after < 0.0).any(axis=-1)
        offset = 0.0  # logQRatio of the proposal the chain last moved to in this batch
        for proposal, log_q_ratio, is_finite, is_inverted in zip(
            proposals, log_q_ratios, finite, inverted, strict=True
        ):
            stats.steps += 1
            stats.proposals += 1
            accepted = False
            if not is_finite:
                stats.rejected_non_finite += 1
            elif is_inverted:
                stats.rejected_chirality += 1
            else:
                energy = self.energy_of(proposal)
                if not math.isfinite(energy):
                    stats.rejected_non_finite += 1
                else:
                    log_acceptance = -(energy - self.energy) / self.kT + float(log_q_ratio) - offset
                    accepted = log_acceptance >= 0.0 or self.uniform() < math.exp(log_acceptance)
            if accepted:
                self.positions = proposal
                self.energy = energy
                stats.accepted += 1
            if stats.steps % self.trajectory_interval == 0:
                self.dcd.writeModel(self.positions)
                stats.frames += 1
            if accepted:
                if not independent:
                    return
                offset = float(log_q_ratio)

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
        openmm_platform = openmm.Platform.getPlatformByName(platform)
        self.groups: list[_Group] = []
        self.chains: list[_Chain] = []  # in the order given
        modules: dict[Path, tuple[torch.jit.ScriptModule, object]] = {}
        groups: dict[tuple, _Group] = {}
        for spec in chains:
            _check_system(spec)
            path = model_file_for_topology(spec.model, spec.topology)
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


def _check_system(spec: ChainSpec) -> None:
    """Refuse what Metropolis-Hastings in Cartesian space cannot sample exactly (as the integrator
    does)."""
    system = spec.system
    positions = np.asarray(spec.positions)
    if positions.shape != (system.getNumParticles(), 3):
        raise ValueError(
            f"chain {spec.name}: positions must have shape ({system.getNumParticles()}, 3) (nm)"
        )
    if system.getNumConstraints():
        raise ValueError(f"chain {spec.name}: the System has constraints; build it without")
    if any(system.isVirtualSite(i) for i in range(system.getNumParticles())):
        raise ValueError(f"chain {spec.name}: the System has virtual sites")
    if system.usesPeriodicBoundaryConditions():
        raise ValueError(f"chain {spec.name}: periodic Systems are not supported")
    if spec.topology.getNumAtoms() != system.getNumParticles():
        raise ValueError(f"chain {spec.name}: the Topology and the System differ in atom count")


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


def peptide_chains(
    model: str | os.PathLike,
    peptides: Sequence[str],
    chains_per_peptide: int,
    seed: int,
    termini: str = "capped",
    system_file: str | os.PathLike | None = None,
) -> list[ChainSpec]:
    """``chains_per_peptide`` chains of each peptide, a PDB file or a sequence of one-letter codes
    (built with :func:`~openmm_timewarp.data.peptides.build_peptide`),
    all with ``model``; parameterised
    with amber14-all + OBC2, or for one peptide the serialized System in ``system_file``. Chain i
    is named ``<i>-<peptide>`` and seeded ``chain_seed(seed, i)``.
    """
    if chains_per_peptide < 1:
        raise ValueError(f"chains_per_peptide must be positive, got {chains_per_peptide}")
    if system_file is not None and len(peptides) != 1:
        raise ValueError(f"a System file is the System of one peptide; {len(peptides)} were given")
    specs = []
    for peptide in peptides:
        path = Path(peptide)
        if path.suffix.lower() == ".pdb":
            if not path.is_file():
                raise ValueError(f"no PDB file {path}")
            pdb = app.PDBFile(str(path))
            topology, positions, label = pdb.topology, pdb.positions, path.stem
        else:
            modeller = build_peptide(peptide, termini)
            topology, positions, label = modeller.topology, modeller.positions, peptide.upper()
        if system_file is None:
            system = create_system(topology)
        else:
            system = read_system(system_file, topology)
        coordinates = np.array(positions.value_in_unit(unit.nanometer))
        for _ in range(chains_per_peptide):
            index = len(specs)
            specs.append(
                ChainSpec(
                    f"{index:04d}-{label}",
                    system,
                    topology,
                    coordinates,
                    model,
                    chain_seed(seed, index),
                )
            )
    return specs


def add_sample_parser(subparsers) -> None:
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.set_defaults(handler=_sample_command)


def _sample_command(args) -> int:
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
