"""The one resumable optimisation loop of every training objective.

:func:`optimise` runs Adam on a model's parameters with a linear learning-rate warm-up and
gradient-norm clipping; what a step minimises and how the model is judged come from an
:class:`Objective` (maximum likelihood, :mod:`~openmm_timewarp.training.likelihood`; the energy
fine-tune, :mod:`~openmm_timewarp.training.finetune`). Every ``validate_every`` steps the objective
evaluates the model (one ``log.csv`` row), the loop keeps the parameters of the best evaluation,
and every ``checkpoint_every`` steps it writes a checkpoint. Run it again with the same output
folder and it resumes from the last checkpoint exactly: the same seed gives the same parameters
whether or not it was interrupted. Under ``torchrun`` (:mod:`~openmm_timewarp.training.distributed`)
each process takes its own draws and process 0 alone evaluates, logs and writes.

An output folder holds :data:`CHECKPOINT_FILE`, :data:`BEST_MODEL_FILE` (a state dict) and
:data:`LOG_FILE`; :func:`plot_log` draws the log as :data:`LOSS_PLOT_FILE`.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import torch

from openmm_timewarp import checkpoints
from openmm_timewarp.files import write_atomically
from openmm_timewarp.optional import require
from openmm_timewarp.progress import progress_bar
from openmm_timewarp.training.distributed import ProcessGroup, from_main, step_generator

CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
LOG_FILE = "log.csv"
LOSS_PLOT_FILE = "loss.png"


@dataclass(frozen=True)
class Schedule:
    """The optimisation schedule that every objective's settings define."""

    steps: int
    learning_rate: float
    warmup_steps: int
    max_grad_norm: float
    validate_every: int
    checkpoint_every: int
    seed: int

    @classmethod
    def of(cls, settings: object, steps: int) -> Schedule:
        """The schedule of a settings dataclass that has the fields of this one but ``steps``."""
        names = (name for name in cls.__dataclass_fields__ if name != "steps")
        return cls(steps=steps, **{name: getattr(settings, name) for name in names})


@dataclass(frozen=True)
class Status:
    """Where the loop stands when it asks the objective to evaluate the model."""

    step: int
    means: dict[str, str]  # the mean of each per-step value since the last evaluation ("" if none)
    learning_rate: float  # of the last step
    grad_norm: float  # of the last step (before clipping)
    seconds: float  # wall time of the optimisation so far, resumed runs included
    skipped: int  # steps skipped for a non-finite loss or gradient


@dataclass(frozen=True)
class Evaluation:
    improved: bool  # the best model so far: its parameters are kept
    row: dict[str, str]  # the log row
    postfix: dict[str, str]  # shown beside the progress bar


class Objective(Protocol):
    """What :func:`optimise` minimises and how it judges the model."""

    #: The columns of ``log.csv``.
    log_columns: tuple[str, ...]
    #: Evaluate the starting model (step 0) before the first step.
    evaluates_start: bool
    #: A step whose loss or gradient norm is not finite leaves the parameters unchanged (and is
    #: counted); otherwise the optimiser steps whatever the gradient.
    skips_nonfinite_steps: bool

    def start(
        self, model: torch.nn.Module, device: torch.device, group: ProcessGroup | None
    ) -> None:
        """Called once the model is on ``device`` with its resumed parameters, before step 1."""

    def loss(self, step: int, draws: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss of step ``step`` (batches drawn from ``draws``) and the per-step
        values whose means the next evaluation logs."""

    def evaluate(self, status: Status) -> Evaluation:
        """Judge the model (process 0 only)."""

    def should_stop(self) -> bool:
        """Stop before the last step (early stopping); read from process 0."""

    def state(self) -> dict:
        """What the objective keeps in a checkpoint (plain values)."""

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` (given the whole checkpoint)."""


@dataclass(frozen=True)
class LoopResult:
    steps: int  # optimisation steps done in all (including before a resume)
    best_step: int  # 0 when the starting model was never improved on
    stopped_early: bool
    skipped: int
    seconds: float  # wall time, summed over resumed runs
    cpu_seconds: float  # CPU time of this process, summed over resumed runs
    log_path: Path
    best_model_path: Path


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
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue())


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


def _means(curves: dict[str, list[float]]) -> dict[str, str]:
    return {
        name: f"{sum(values) / len(values):.6g}" if values else ""
        for name, values in curves.items()
    }


def optimise(
    model: torch.nn.Module,
    objective: Objective,
    schedule: Schedule,
    settings: dict,
    output: Path,
    progress: bool = True,
    group: ProcessGroup | None = None,
    description: str = "training",
) -> LoopResult:
    """Minimise ``objective`` over ``model``'s parameters in the folder ``output``; leaves the
    model holding the parameters of the best evaluation.

    ``settings`` (every setting of the run, as plain values) is stored in each checkpoint and
    must match on resume. ``group`` is this process's place in a ``torchrun`` launch, if any.
    """
    rank = group.rank if group else 0
    device = group.device if group else torch.device("cpu")
    main = rank == 0
    output.mkdir(parents=True, exist_ok=True)
    checkpoint_path = output / CHECKPOINT_FILE
    best_path = output / BEST_MODEL_FILE
    log_path = output / LOG_FILE

    torch.manual_seed(schedule.seed)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=schedule.learning_rate)
    generator = torch.Generator().manual_seed(schedule.seed)
    step, best_step, skipped, elapsed, cpu_elapsed = 0, 0, 0, 0.0, 0.0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    resumed = checkpoint_path.exists()
    if resumed:
        checkpoint = checkpoints.load_checkpoint(checkpoint_path, map_location=device)
        if checkpoint["settings"] != settings:
            raise ValueError(
                f"{checkpoint_path} was written with other settings {checkpoint['settings']}; "
                "rerun with those, or use a new output folder (or remove this one to start again)"
            )
        checkpoints.load_model_state(model, checkpoint["model"], checkpoint_path)
        optimiser.load_state_dict(checkpoint["optimiser"])
        generator.set_state(checkpoint["generator"])
        step, best_step = checkpoint["step"], checkpoint["best_step"]
        skipped, elapsed = checkpoint.get("skipped", 0), checkpoint["seconds"]
        cpu_elapsed = checkpoint.get("cpu_seconds", 0.0)
        best_state = checkpoint["best_model"]
        objective.load_state(checkpoint)
    log_rows = read_log(log_path, step)
    learning_rate_at = partial(warmup_learning_rate, schedule.learning_rate, schedule.warmup_steps)
    if main:
        write_log(log_path, log_rows, objective.log_columns)

    def save_checkpoint() -> None:
        state = {
            "settings": settings,
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "generator": generator.get_state(),
            "step": step,
            "best_step": best_step,
            "skipped": skipped,
            "seconds": elapsed,
            "cpu_seconds": cpu_elapsed,
            "best_model": best_state,
            **objective.state(),
        }
        checkpoints.save_checkpoint(state, checkpoint_path)
        write_log(log_path, log_rows, objective.log_columns)

    curves: dict[str, list[float]] = {}
    grad_norm = math.nan
    started = time.perf_counter() - elapsed
    cpu_started = time.process_time() - cpu_elapsed

    def evaluate() -> Evaluation:
        nonlocal best_step, best_state
        status = Status(
            step=step,
            means=_means(curves),
            learning_rate=learning_rate_at(max(step - 1, 0)),
            grad_norm=grad_norm,
            seconds=time.perf_counter() - started,
            skipped=skipped,
        )
        evaluation = objective.evaluate(status)
        if evaluation.improved:
            best_step = step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log_rows.append(evaluation.row)
        return evaluation

    if not resumed and objective.evaluates_start and main:
        evaluate()
        save_checkpoint()
    model.train()
    objective.start(model, device, group)
    stopped_early = objective.should_stop()
    bar = progress_bar(
        total=schedule.steps, initial=step, enabled=progress and main, desc=description
    )
    while step < schedule.steps and not stopped_early:
        for param_group in optimiser.param_groups:
            param_group["lr"] = learning_rate_at(step)
        draws = generator if group is None else step_generator(schedule.seed, rank, step)
        loss, values = objective.loss(step, draws)
        optimiser.zero_grad()
        loss.backward()
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.max_grad_norm)
        )
        finite = math.isfinite(grad_norm) and bool(torch.isfinite(loss))
        if finite or not objective.skips_nonfinite_steps:
            optimiser.step()
        else:
            skipped += 1
        for name, value in values.items():
            curves.setdefault(name, []).append(value)
        step += 1
        bar.update(1)
        if step % schedule.validate_every == 0 or step == schedule.steps:
            if main:
                bar.set_postfix(**evaluate().postfix)
            curves.clear()
            stopped_early = from_main(objective.should_stop(), group)
        if step % schedule.checkpoint_every == 0 or stopped_early or step == schedule.steps:
            elapsed = time.perf_counter() - started
            cpu_elapsed = time.process_time() - cpu_started
            if main:
                save_checkpoint()
    bar.close()
    if group is not None:
        cpu_state = {k: v.cpu() for k, v in best_state.items()} if main else None
        best_state, best_step, elapsed, objective_state = from_main(
            (cpu_state, best_step, elapsed, objective.state()), group
        )
        objective.load_state(objective_state)
    model.load_state_dict(best_state)
    if main:
        checkpoints.save_checkpoint(best_state, best_path)
    return LoopResult(
        steps=step,
        best_step=best_step,
        stopped_early=stopped_early,
        skipped=skipped,
        seconds=elapsed,
        cpu_seconds=cpu_elapsed,
        log_path=log_path,
        best_model_path=best_path,
    )
