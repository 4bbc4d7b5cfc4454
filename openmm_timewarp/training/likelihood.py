"""Maximum-likelihood training of proposal models on molecular-dynamics frames or pairs.

Family-generic: any ``torch.nn.Module`` with

    training_nll(x_cond: Tensor[B, N, 3], x_next: Tensor[B, N, 3], atom_types: Tensor[N])
        -> Tensor[B]

trains here: a conditional model on pairs ``(x(t), x(t + tau))``, an independent one on frames
(pass the frames as both ``x_cond`` and ``x_next``; the model ignores ``x_cond``). Split the data by
time beforehand (``openmm_timewarp.data.datasets.load_pairs`` / ``load_frames`` do, with a gap),
so the
validation NLL that early stopping watches measures generalisation.

:func:`train` runs the resumable loop of :mod:`openmm_timewarp.training.loop` (Adam with a linear
warm-up and gradient-norm clipping) on the NLL of the training pairs: it evaluates the validation
NLL every ``validate_every`` steps, keeps the best model, stops after ``patience`` evaluations
without improvement, writes ``log.csv`` (one row per evaluation) and a checkpoint every
``checkpoint_every`` steps. Run it again with the same output folder and it resumes from the last
checkpoint exactly: the same seed gives the same parameters whether or not it was interrupted.

Example (internal-coordinate proposals on the alanine-dipeptide data)::

    from openmm_timewarp.data.datasets import load_topology
    from openmm_timewarp.proposals.ic.families import proposal_for_frames
    from openmm_timewarp.training.likelihood import TrainingSettings, load_training_data, train

    topology = load_topology("data/alanine-dipeptide")
    train_pairs, validation_pairs = load_training_data("data/alanine-dipeptide", tau_ps=20.0)
    model = proposal_for_frames("ic-conditional", topology, train_pairs[1])
    atom_types = torch.arange(topology.getNumAtoms())  # the data are in the model's atom order
    result = train(model, train_pairs, validation_pairs, atom_types, "runs/ic-conditional")

(``tau_ps=None`` and ``"ic-independent"`` for an independent model.) Export the result with
``contract.export(model, path, proposals.ic.families.proposal_metadata(model, ...))``.

Several molecules (a transferable model): :func:`train_peptides` takes one :class:`PeptideData`
per molecule. Each batch comes from one molecule (so no padding is needed), drawn with probability
proportional to its number of training pairs; the validation NLL is the mean over the validation
pairs of all molecules. :func:`train` is the one-molecule case.

Several processes: launched by ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1 in the
environment), training runs as ``torch.nn.parallel.DistributedDataParallel`` on ``cuda:LOCAL_RANK``
(NCCL) or on the CPU (gloo). Each process draws ``batch_size / N`` pairs from its own random stream,
so that one step averages the gradient over ``batch_size`` pairs as in one process; process 0 alone
validates, logs and writes checkpoints, and every process ends holding the best parameters.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from openmm_timewarp.training.distributed import (
    ProcessGroup,
    batch_size_per_process,
    distributed_process_group,
)
from openmm_timewarp.training.loop import Evaluation, Schedule, Status, optimise

LOG_COLUMNS = ("step", "train_nll", "validation_nll", "learning_rate", "grad_norm", "seconds")
#: The panels of the training's loss plot: (axis label, log columns).
LOSS_PANELS = (("NLL", ("train_nll", "validation_nll")),)


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation settings; stored in every checkpoint and checked on resume."""

    max_steps: int = 5_000
    batch_size: int = 256
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    max_grad_norm: float = 10.0
    validate_every: int = 100
    patience: int = 5
    checkpoint_every: int = 500
    max_validation_pairs: int = 8_192
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "validate_every", "checkpoint_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not self.max_grad_norm > 0 or self.warmup_steps < 0:
            raise ValueError("learning_rate and max_grad_norm must be positive, warmup_steps >= 0")
        if self.checkpoint_every % self.validate_every:
            # Checkpoints fall on evaluations, so a resumed run logs the same rows.
            raise ValueError("checkpoint_every must be a multiple of validate_every")


@dataclass(frozen=True)
class TrainingResult:
    steps: int  # optimisation steps done in all (including before a resume)
    best_step: int
    best_validation_nll: float
    stopped_early: bool
    seconds: float  # wall time of the optimisation, summed over resumed runs
    log_path: Path
    best_model_path: Path


@dataclass(frozen=True)
class PeptideData:
    """Training and validation pairs of one molecule, ``(x_cond, x_next)`` each, and its types."""

    train: tuple[torch.Tensor, torch.Tensor]
    validation: tuple[torch.Tensor, torch.Tensor]
    atom_types: torch.Tensor  # [N] int64, the model's type code of every atom
    name: str = ""
    #: How often the molecule is drawn for a batch, relative to the others; default its number
    #: of training pairs (every pair equally often). Chains pooled with MD keep the MD count.
    weight: float | None = None


class _TrainingNLL(torch.nn.Module):
    """``training_nll`` as ``forward``: DistributedDataParallel synchronises through forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        return self.model.training_nll(x_cond, x_next, atom_types)


def load_training_data(
    data_dir: str | os.PathLike, tau_ps: float | None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Train and validation data from ``timewarp simulate`` output, split by time with a gap.

    With ``tau_ps`` the pairs ``(x(t), x(t + tau))``; with ``None`` the frames, as
    ``(frames, frames)`` for an independent model.
    """
    from openmm_timewarp.data.datasets import (
        DEFAULT_FRACTIONS,
        list_trajectories,
        load_frames,
        load_pairs,
    )

    if tau_ps is None:
        train_frames = load_frames(data_dir, "train")
        # A gap keeps validation frames from being near-copies of the last train frames: 100 ps,
        # or half the validation segment of the shortest trajectory if that is shorter.
        trajectories = list_trajectories(data_dir)
        shortest_ps = min(t.num_frames * t.frame_interval_ps for t in trajectories)
        interval_ps = trajectories[0].frame_interval_ps
        gap_ps = min(100.0, 0.5 * DEFAULT_FRACTIONS[1] * shortest_ps)
        gap_ps = interval_ps * math.floor(gap_ps / interval_ps)
        validation_frames = load_frames(data_dir, "validation", gap_ps=gap_ps)
        return (train_frames, train_frames), (validation_frames, validation_frames)
    return load_pairs(data_dir, tau_ps, "train"), load_pairs(data_dir, tau_ps, "validation")


def _check_pairs(name: str, pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    x_cond, x_next = pairs
    if x_cond.shape != x_next.shape or x_cond.ndim != 3 or x_cond.shape[-1] != 3:
        raise ValueError(
            f"{name} must be two tensors of the same shape [B, N, 3], got "
            f"{tuple(x_cond.shape)} and {tuple(x_next.shape)}"
        )
    if len(x_cond) == 0:
        raise ValueError(f"{name} is empty: generate more data or use a smaller tau")


def _device_of(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _nll_sum(
    model: torch.nn.Module,
    pairs: tuple[torch.Tensor, torch.Tensor],
    atom_types: torch.Tensor,
    chunk: int,
) -> float:
    """Summed NLL of ``pairs`` on the model's device (no gradients)."""
    device = _device_of(model)
    atom_types = atom_types.to(device)
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(pairs[0]), chunk):
            nll = model.training_nll(
                pairs[0][start : start + chunk].to(device),
                pairs[1][start : start + chunk].to(device),
                atom_types,
            )
            total += float(nll.double().sum())
    model.train(was_training)
    return total


def validation_nll(
    model: torch.nn.Module,
    pairs: tuple[torch.Tensor, torch.Tensor],
    atom_types: torch.Tensor,
    chunk: int = 2_048,
) -> float:
    """Mean NLL of ``pairs`` under ``model`` (no gradients)."""
    return _nll_sum(model, pairs, atom_types, chunk) / len(pairs[0])


def _peptides_validation_nll(
    model: torch.nn.Module, peptides: Sequence[PeptideData], chunk: int = 2_048
) -> float:
    """Mean NLL over the validation pairs of all molecules."""
    total = sum(_nll_sum(model, p.validation, p.atom_types, chunk) for p in peptides)
    return total / sum(len(p.validation[0]) for p in peptides)


def _validation_subset(
    pairs: tuple[torch.Tensor, torch.Tensor], size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if len(pairs[0]) <= size:
        return pairs
    generator = torch.Generator().manual_seed(seed + 1)
    index = torch.randperm(len(pairs[0]), generator=generator)[:size]
    return pairs[0][index], pairs[1][index]


def train(
    model: torch.nn.Module,
    train_pairs: tuple[torch.Tensor, torch.Tensor],
    validation_pairs: tuple[torch.Tensor, torch.Tensor],
    atom_types: torch.Tensor,
    output_dir: str | os.PathLike,
    settings: TrainingSettings | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Fit ``model`` by maximum likelihood; leaves it holding the best validation parameters.

    Args:
        model: has ``training_nll(x_cond, x_next, atom_types) -> Tensor[B]``.
        train_pairs, validation_pairs: ``(x_cond, x_next)``, float32 ``[B, N, 3]`` nm, split by
            time beforehand; for an independent model pass ``(frames, frames)``.
        atom_types: the model's type code of every atom, ``[N]`` int64.
        output_dir: gets ``checkpoint.pt``, ``best_model.pt`` (a state dict) and ``log.csv``; an
            existing checkpoint there is resumed (it must come from the same settings).
        settings: optimisation settings (defaults: :class:`TrainingSettings`).
        progress: show progress (a bar on a terminal, else log lines).
    """
    peptide = PeptideData(train_pairs, validation_pairs, atom_types)
    return train_peptides(model, [peptide], output_dir, settings, progress)


def train_peptides(
    model: torch.nn.Module,
    peptides: Sequence[PeptideData],
    output_dir: str | os.PathLike,
    settings: TrainingSettings | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Fit ``model`` to one or more molecules (see :func:`train` for the arguments).

    Each step draws one molecule, with probability proportional to its number of training pairs,
    and a batch of its pairs; with one molecule the draws are those of earlier versions, so
    their checkpoints resume bit for bit. Under ``torchrun`` every process draws its own molecule
    and ``batch_size / WORLD_SIZE`` pairs, and the gradients are averaged by
    DistributedDataParallel.
    """
    settings = settings or TrainingSettings()
    if not peptides:
        raise ValueError("give the data of at least one molecule")
    for peptide in peptides:
        label = f" of {peptide.name}" if peptide.name else ""
        _check_pairs(f"train pairs{label}", peptide.train)
        _check_pairs(f"validation pairs{label}", peptide.validation)
    if not callable(getattr(model, "training_nll", None)):
        raise ValueError("the model needs a method training_nll(x_cond, x_next, atom_types)")
    with distributed_process_group() as group:
        return _train_peptides(model, peptides, Path(output_dir), settings, progress, group)


class LikelihoodObjective:
    """The mean NLL of a batch of one molecule's training pairs; judged by the validation NLL
    (lower is better), stopping after ``patience`` evaluations without improvement."""

    log_columns = LOG_COLUMNS
    evaluates_start = False
    skips_nonfinite_steps = False

    def __init__(
        self, model: torch.nn.Module, peptides: Sequence[PeptideData], settings: TrainingSettings
    ) -> None:
        self.model = model
        self.peptides = peptides
        self.settings = settings
        size = math.ceil(settings.max_validation_pairs / len(peptides))
        self.validation = [
            PeptideData(
                p.train, _validation_subset(p.validation, size, settings.seed), p.atom_types
            )
            for p in peptides
        ]
        self.pair_counts = torch.tensor(
            [len(p.train[0]) if p.weight is None else p.weight for p in peptides],
            dtype=torch.float64,
        )
        self.best_nll, self.stale = math.inf, 0

    def start(
        self, model: torch.nn.Module, device: torch.device, group: ProcessGroup | None
    ) -> None:
        self.device, self.group = device, group
        self.batch_size = batch_size_per_process(self.settings.batch_size)
        self.atom_types = [p.atom_types.to(device) for p in self.peptides]
        self.loss_of: torch.nn.Module = _TrainingNLL(model)
        if group is not None:
            device_ids = [device.index] if device.type == "cuda" else None
            self.loss_of = torch.nn.parallel.DistributedDataParallel(
                self.loss_of, device_ids=device_ids
            )

    def loss(self, step: int, draws: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        which = 0
        if len(self.peptides) > 1:
            which = int(torch.multinomial(self.pair_counts, 1, generator=draws))
        x_cond, x_next = self.peptides[which].train
        index = torch.randint(len(x_cond), (self.batch_size,), generator=draws)
        loss = self.loss_of(
            x_cond[index].to(self.device), x_next[index].to(self.device), self.atom_types[which]
        ).mean()
        mean_loss = loss.detach()
        if self.group is not None:
            mean_loss = mean_loss.clone()
            dist.all_reduce(mean_loss)
            mean_loss /= self.group.world_size
        if not torch.isfinite(mean_loss):
            raise FloatingPointError(
                f"non-finite training NLL at step {step}: a training configuration lies outside "
                "the model's support (widen its coordinate bounds) or the learning rate is too high"
            )
        return loss, {"train_nll": float(mean_loss)}

    def evaluate(self, status: Status) -> Evaluation:
        nll = _peptides_validation_nll(self.model, self.validation)
        improved = nll < self.best_nll
        if improved:
            self.best_nll, self.stale = nll, 0
        else:
            self.stale += 1
        row = {
            "step": str(status.step),
            "train_nll": status.means.get("train_nll", ""),
            "validation_nll": f"{nll:.6g}",
            "learning_rate": f"{status.learning_rate:.6g}",
            "grad_norm": f"{status.grad_norm:.6g}",
            "seconds": f"{status.seconds:.2f}",
        }
        return Evaluation(improved, row, {"train": row["train_nll"], "validation": f"{nll:.4g}"})

    def should_stop(self) -> bool:
        return self.stale >= self.settings.patience

    def state(self) -> dict:
        return {"stale": self.stale, "best_nll": self.best_nll}

    def load_state(self, state: dict) -> None:
        self.stale, self.best_nll = state["stale"], state["best_nll"]


def _train_peptides(
    model: torch.nn.Module,
    peptides: Sequence[PeptideData],
    output: Path,
    settings: TrainingSettings,
    progress: bool,
    group: ProcessGroup | None,
) -> TrainingResult:
    objective = LikelihoodObjective(model, peptides, settings)
    result = optimise(
        model,
        objective,
        Schedule.of(settings, settings.max_steps),
        asdict(settings),
        output,
        progress,
        group,
        description="training",
    )
    return TrainingResult(
        steps=result.steps,
        best_step=result.best_step,
        best_validation_nll=objective.best_nll,
        stopped_early=result.stopped_early,
        seconds=result.seconds,
        log_path=result.log_path,
        best_model_path=result.best_model_path,
    )
