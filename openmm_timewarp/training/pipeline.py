"""``timewarp train`` as a library call: fit a model in its training folder, optionally
fine-tune it on the energy, export it.

Under ``torchrun`` every process trains; process 0 alone writes the folder (docs/training.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from openmm_timewarp.data.energy import ReducedPotential
from openmm_timewarp.training import finetune
from openmm_timewarp.training.distributed import (
    batch_size_per_process,
    distributed_process_group,
    is_main_process,
    on_main_process,
)
from openmm_timewarp.training.finetune import FineTuneSettings
from openmm_timewarp.training.folder import MODEL_FILE, TrainingFolder, training_record
from openmm_timewarp.training.likelihood import (
    LOSS_PANELS,
    TrainingResult,
    TrainingSettings,
    train_peptides,
)
from openmm_timewarp.training.loop import plot_log


@dataclass(frozen=True)
class TrainedFolder:
    """What :func:`train_folder` did: the folder, the maximum-likelihood result, the model file
    (None in processes other than 0 of a ``torchrun`` launch, which write nothing)."""

    folder: TrainingFolder
    result: TrainingResult
    model_path: Path | None


def train_folder(
    output: Path,
    recipe: dict,
    data: list[Path],
    name: str | None = None,
    fine_tune: FineTuneSettings | None = None,
    model_file: Path | None = None,
    progress: bool = True,
) -> TrainedFolder:
    """Train (or resume) the model of ``recipe`` on ``data`` in the folder ``output``, then
    fine-tune it if ``fine_tune`` is given, and export it to ``model_file`` (default
    ``OUTPUT/model.pt``). The CPU time of every run, interrupted ones included, adds up in the
    folder's record."""
    with distributed_process_group():
        return _train_folder(output, recipe, data, name, fine_tune, model_file, progress)


def _train_folder(
    output: Path,
    recipe: dict,
    data: list[Path],
    name: str | None,
    fine_tune: FineTuneSettings | None,
    model_file: Path | None,
    progress: bool,
) -> TrainedFolder:
    batch_size_per_process(recipe["settings"]["batch_size"])  # before anything is written
    record = on_main_process(lambda: training_record(output, recipe, data, name))
    folder = TrainingFolder.with_record(output, record)
    started = time.process_time()
    try:
        result = train_peptides(
            folder.model,
            folder.peptides,
            output,
            TrainingSettings(**record["recipe"]["settings"]),
            progress=progress,
        )
    finally:
        if is_main_process():
            folder.record["cpu_seconds"] += time.process_time() - started
            folder.save_record()
    if not is_main_process():
        return TrainedFolder(folder, result, None)
    folder.record["summary"] = {
        "steps": result.steps,
        "best_step": result.best_step,
        "best_validation_nll": result.best_validation_nll,
        "stopped_early": result.stopped_early,
        "wall_seconds": round(result.seconds, 1),
        "cpu_seconds": round(folder.record["cpu_seconds"], 3),  # a tiny run takes under 0.05 s
    }
    folder.save_record()
    plot_log(result.log_path, LOSS_PANELS)
    if fine_tune is not None:
        folder.record["summary"]["fine_tune"] = fine_tune_folder(
            folder, fine_tune, progress=progress
        )
        folder.save_record()
    model_path = model_file or output / MODEL_FILE
    folder.export(model_path)
    return TrainedFolder(folder, result, model_path)


def fine_tune_folder(
    folder: TrainingFolder | str | os.PathLike,
    settings: FineTuneSettings,
    progress: bool = True,
) -> dict:
    """Fine-tune the model of a finished ``timewarp train`` folder, starting from its best
    maximum-likelihood parameters, in ``FOLDER/fine-tune-<objective>/``; the model is left
    holding the fine-tuned parameters. Returns the summary for the model's metadata.

    The System is rebuilt from the folder's topology with the data's force field
    (``peptides.create_system``), at the data's temperature.
    """
    from openmm_timewarp.data.peptides import FORCEFIELD_NAME, create_system

    if not isinstance(folder, TrainingFolder):
        folder = TrainingFolder.open(Path(folder))
    folder.load_best()
    recipe, facts = folder.record["recipe"], folder.record["facts"]
    if "train" not in folder.data:
        raise ValueError(f"{folder.path} holds several molecules; the fine-tune takes one")
    if facts["forcefield"] != FORCEFIELD_NAME:
        raise ValueError(
            f"{folder.path} was trained on {facts['forcefield']} data; the fine-tune builds "
            f"{FORCEFIELD_NAME} Systems only"
        )
    finetune.settings_for_family(recipe["family"], **asdict(settings))
    potential = ReducedPotential(create_system(folder.topology), facts["temperature_K"])
    result = finetune.fine_tune(
        folder.model,
        potential,
        folder.data["train"],
        folder.data["validation"],
        folder.atom_types,
        folder.path / f"fine-tune-{settings.objective}",
        settings,
        proposal=folder.proposal,
        progress=progress,
    )
    plot_log(result.log_path, finetune.LOSS_PANELS)
    return {
        "settings": asdict(settings),
        "steps": result.steps,
        "best_step": result.best_step,
        "initial_validation_acceptance": result.initial_validation_acceptance,
        "best_validation_acceptance": result.best_validation_acceptance,
        "best_validation_nll": result.best_validation_nll,
        "nonfinite_energies": result.nonfinite_energies,
        "skipped_steps": result.skipped_steps,
        "wall_seconds": round(result.seconds, 1),
        "cpu_seconds": round(result.cpu_seconds, 1),
    }
