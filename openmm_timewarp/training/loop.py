"""Maximum-likelihood training of proposal models on molecular-dynamics frames or pairs.

Family-generic: any ``torch.nn.Module`` with

    training_nll(x_cond: Tensor[B, N, 3], x_next: Tensor[B, N, 3], atom_types: Tensor[N])
        -> Tensor[B]

trains here: a conditional model on pairs ``(x(t), x(t + tau))``, an independent one on frames
(pass the frames as both ``x_cond`` and ``x_next``; the model ignores ``x_cond``). Split the data by
time beforehand (``openmm_timewarp.data.datasets.load_pairs`` / ``load_frames`` do, with a gap),
so the
validation NLL that early stopping watches measures generalisation.

:func:`train` runs Adam with a linear warm-up and gradient-norm clipping, evaluates the validation
NLL every ``validate_every`` steps, keeps the best model, stops after ``patience`` evaluations
without improvement, writes ``log.csv`` (one row per evaluation) and a checkpoint every
``checkpoint_every`` steps. Run it again with the same output folder and it resumes from the last
checkpoint exactly: the same seed gives the same parameters whether or not it was interrupted.

Example (internal-coordinate proposals on the alanine-dipeptide data)::

    from openmm_timewarp.data.datasets import load_topology
    from openmm_timewarp.proposals.ic.families import proposal_for_frames
    from openmm_timewarp.training.loop import TrainingSettings, load_training_data, train

    topology = load_topology("data/alanine-dipeptide")
    train_pairs, validation_pairs = load_training_data("data/alanine-dipeptide", tau_ps=20.0)
    model = proposal_for_frames("ic-conditional", topology, train_pairs[1])
    atom_types = torch.arange(topology.getNumAtoms())  # the data are in the model's atom order
    result = train(model, train_pairs, validation_pairs, atom_types, "runs/ic-conditional")

(``tau_ps=None`` and ``"ic-independent"`` for an independent model.) Export the result with
``contract.export(model, path, internal.proposals.proposal_metadata(model, ...))``.

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

import contextlib
import csv
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from openmm_timewarp import checkpoints
from openmm_timewarp.optional import require
from openmm_timewarp.progress import progress_bar

CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
LOG_FILE = "log.csv"
LOG_COLUMNS = ("step", "train_nll", "validation_nll", "learning_rate", "grad_norm", "seconds")
LOSS_PLOT_FILE = "loss.png"
#: The panels of the training's loss plot: (axis label, log columns).
LOSS_PANELS = (("NLL", ("train_nll", "validation_nll")),)
T = TypeVar("T")


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


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a ``torchrun`` launch."""

    rank: int
    world_size: int
    device: torch.device


@contextlib.contextmanager
def distributed_process_group() -> Iterator[ProcessGroup | None]:
    """Join the process group of a ``torchrun`` launch (``WORLD_SIZE`` > 1); else yield None.

    Initialises it (NCCL on ``cuda:LOCAL_RANK`` when CUDA is available, gloo on the CPU
    otherwise) and destroys it on exit, unless it was already initialised by the caller.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield None
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if dist.is_initialized():
        yield ProcessGroup(dist.get_rank(), dist.get_world_size(), device)
        return
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield ProcessGroup(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True outside a ``torchrun`` launch and on its process 0."""
    return not dist.is_initialized() or dist.get_rank() == 0


def batch_size_per_process(batch_size: int) -> int:
    """Each process's share of the batch; ValueError unless the processes divide it evenly."""
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {world_size} processes: "
            "choose a batch size that is a multiple of --nproc_per_node"
        )
    return batch_size // world_size


def on_main_process(prepare: Callable[[], T]) -> T:
    """Run ``prepare`` on process 0 alone and return its result in every process.

    For work that must happen once (writing a training folder). When it raises, process 0
    raises that error and the others a ValueError with its message, so that none waits for the
    others forever. Outside a distributed run it is ``prepare()``.
    """
    if not dist.is_initialized():
        return prepare()
    result, failure = None, None
    if dist.get_rank() == 0:
        try:
            result = prepare()
        except Exception as raised:
            failure = raised
    box = [(result, None if failure is None else f"process 0 failed: {failure}")]
    dist.broadcast_object_list(box, src=0)
    result, error = box[0]
    if failure is not None:
        raise failure
    if error is not None:
        raise ValueError(error)
    return result


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


def warmup_learning_rate(learning_rate: float, warmup_steps: int, step: int) -> float:
    """The learning rate of optimisation step ``step`` (from 0) under a linear warm-up."""
    if warmup_steps == 0:
        return learning_rate
    return learning_rate * min(1.0, (step + 1) / warmup_steps)


def read_log(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """The rows of a CSV curve log up to ``up_to_step`` (a resumed run rewrites the rest)."""
    if not path.exists():
        return []
    try:
        with path.open(newline="") as handle:
            return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]
    except (KeyError, TypeError, ValueError, csv.Error) as error:
        raise ValueError(
            f"{path} is damaged ({error!r}); remove it (the curves before this run are then "
            "lost) or use a new output folder"
        ) from None


def write_log(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """Write a CSV curve log atomically (an interrupted write leaves the previous one)."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def plot_log(log_path: Path, panels: Sequence[tuple[str, Sequence[str]]]) -> Path:
    """Plot a CSV curve log against the step, one panel per (label, columns), as
    :data:`LOSS_PLOT_FILE` beside it; returns the plot's path."""
    require("matplotlib").use("Agg")
    plt = require("matplotlib.pyplot")
    with log_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(row["step"]) for row in rows]
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(6.0, 2.8 * len(panels)), sharex=True, squeeze=False
    )
    for axis, (label, columns) in zip(axes[:, 0], panels, strict=True):
        for column in columns:
            values = [float(row[column] or "nan") for row in rows]
            axis.plot(steps, values, marker=".", label=column.replace("_", " "))
        axis.set_ylabel(label)
        axis.legend()
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(f"{log_path.parent.name}/{log_path.name}")
    figure.tight_layout()
    path = log_path.with_name(LOSS_PLOT_FILE)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


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


def _step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The random stream of one process at one step of a distributed run.

    Seeded from (seed, rank, step) rather than carried along, so that a resumed run draws what
    the uninterrupted one would have without gathering every process's generator state.
    """
    # 32 bits: what torch's CPU generator keeps of a seed.
    entropy = np.random.SeedSequence([seed, rank, step]).generate_state(1)
    return torch.Generator().manual_seed(int(entropy[0]))


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


def _train_peptides(
    model: torch.nn.Module,
    peptides: Sequence[PeptideData],
    output: Path,
    settings: TrainingSettings,
    progress: bool,
    group: ProcessGroup | None,
) -> TrainingResult:
    rank = group.rank if group else 0
    device = group.device if group else torch.device("cpu")
    local_batch_size = batch_size_per_process(settings.batch_size)
    main = rank == 0
    output.mkdir(parents=True, exist_ok=True)
    checkpoint_path = output / CHECKPOINT_FILE
    best_path = output / BEST_MODEL_FILE
    log_path = output / LOG_FILE
    size = math.ceil(settings.max_validation_pairs / len(peptides))
    validation = [
        PeptideData(p.train, _validation_subset(p.validation, size, settings.seed), p.atom_types)
        for p in peptides
    ]

    torch.manual_seed(settings.seed)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    step, best_step, stale, elapsed = 0, 0, 0, 0.0
    best_nll = math.inf
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if checkpoint_path.exists():
        checkpoint = checkpoints.load_checkpoint(checkpoint_path, map_location=device)
        if checkpoint["settings"] != asdict(settings):
            raise ValueError(
                f"{checkpoint_path} was written with other settings {checkpoint['settings']}; "
                "use a new output folder or the same settings"
            )
        checkpoints.load_model_state(model, checkpoint["model"], checkpoint_path)
        optimiser.load_state_dict(checkpoint["optimiser"])
        generator.set_state(checkpoint["generator"])
        step, best_step, stale = checkpoint["step"], checkpoint["best_step"], checkpoint["stale"]
        best_nll, elapsed = checkpoint["best_nll"], checkpoint["seconds"]
        best_state = checkpoint["best_model"]
    log_rows = read_log(log_path, step)
    learning_rate_at = partial(warmup_learning_rate, settings.learning_rate, settings.warmup_steps)
    if main:
        write_log(log_path, log_rows, LOG_COLUMNS)

    def save_checkpoint() -> None:
        state = {
            "settings": asdict(settings),
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "generator": generator.get_state(),
            "step": step,
            "best_step": best_step,
            "stale": stale,
            "best_nll": best_nll,
            "seconds": elapsed,
            "best_model": best_state,
        }
        checkpoints.save_checkpoint(state, checkpoint_path)
        write_log(log_path, log_rows, LOG_COLUMNS)

    stopped_early = stale >= settings.patience
    pair_counts = torch.tensor([len(p.train[0]) for p in peptides], dtype=torch.float64)
    atom_types = [p.atom_types.to(device) for p in peptides]
    model.train()
    loss_of = _TrainingNLL(model)
    if group is not None:
        device_ids = [device.index] if device.type == "cuda" else None
        loss_of = torch.nn.parallel.DistributedDataParallel(loss_of, device_ids=device_ids)
    bar = progress_bar(
        total=settings.max_steps, initial=step, enabled=progress and main, desc="training"
    )
    losses: list[float] = []
    grad_norm = 0.0
    started = time.perf_counter() - elapsed
    while step < settings.max_steps and not stopped_early:
        for param_group in optimiser.param_groups:
            param_group["lr"] = learning_rate_at(step)
        draws = generator if group is None else _step_generator(settings.seed, rank, step)
        which = 0
        if len(peptides) > 1:
            which = int(torch.multinomial(pair_counts, 1, generator=draws))
        x_cond, x_next = peptides[which].train
        index = torch.randint(len(x_cond), (local_batch_size,), generator=draws)
        loss = loss_of(x_cond[index].to(device), x_next[index].to(device), atom_types[which])
        loss = loss.mean()
        mean_loss = loss.detach()
        if group is not None:
            mean_loss = mean_loss.clone()
            dist.all_reduce(mean_loss)
            mean_loss /= group.world_size
        if not torch.isfinite(mean_loss):
            raise FloatingPointError(
                f"non-finite training NLL at step {step}: a training configuration lies outside "
                "the model's support (widen its coordinate bounds) or the learning rate is too high"
            )
        optimiser.zero_grad()
        loss.backward()
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        )
        optimiser.step()
        losses.append(float(mean_loss))
        step += 1
        bar.update(1)
        if step % settings.validate_every == 0 or step == settings.max_steps:
            if main:
                nll = _peptides_validation_nll(model, validation)
                if nll < best_nll:
                    best_nll, best_step, stale = nll, step, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                elapsed = time.perf_counter() - started
                log_rows.append(
                    {
                        "step": str(step),
                        "train_nll": f"{sum(losses) / len(losses):.6g}",
                        "validation_nll": f"{nll:.6g}",
                        "learning_rate": f"{learning_rate_at(step - 1):.6g}",
                        "grad_norm": f"{grad_norm:.6g}",
                        "seconds": f"{elapsed:.2f}",
                    }
                )
                bar.set_postfix(train=log_rows[-1]["train_nll"], validation=f"{nll:.4g}")
            losses = []
            stopped_early = _from_main(stale >= settings.patience, group)
        if step % settings.checkpoint_every == 0 or stopped_early or step == settings.max_steps:
            elapsed = time.perf_counter() - started
            if main:
                save_checkpoint()
    bar.close()
    if group is not None:
        cpu_state = {k: v.cpu() for k, v in best_state.items()} if main else None
        best_state, best_step, best_nll, elapsed = _from_main(
            (cpu_state, best_step, best_nll, elapsed), group
        )
    model.load_state_dict(best_state)
    if main:
        checkpoints.save_checkpoint(best_state, best_path)
    return TrainingResult(
        steps=step,
        best_step=best_step,
        best_validation_nll=best_nll,
        stopped_early=stopped_early,
        seconds=elapsed,
        log_path=log_path,
        best_model_path=best_path,
    )


def _from_main(value, group: ProcessGroup | None):
    """``value`` as process 0 has it, in every process (itself outside a distributed run)."""
    if group is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
