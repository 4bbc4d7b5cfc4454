"""``timewarp train``: fit a proposal model by maximum likelihood (optionally fine-tune it on the
energy) and export it; or export the mixture of two trained IC folders."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from openmm_timewarp.models.registry import FAMILIES
from openmm_timewarp.training.finetune import (
    OBJECTIVES,
    SETTING_HELP,
    FineTuneSettings,
    settings_for_family,
)
from openmm_timewarp.training.folder import (
    DEFAULT_CHAIN_BURN_IN,
    INDEPENDENT_NOMINAL_TAU_PS,
    MODEL_FILE,
)
from openmm_timewarp.training.likelihood import TrainingSettings

TRAIN_FAMILIES = (*FAMILIES, "ic-mixture")
#: The flow size when ``--preset`` is not given.
DEFAULT_PRESET = "cpu-small"
_SETTING_HELP = {
    "max_steps": "optimisation steps in all",
    "batch_size": "pairs per step",
    "learning_rate": "Adam's learning rate after the warm-up",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "max_grad_norm": "gradient-norm clipping",
    "validate_every": "steps between validation NLL evaluations (one log.csv row each)",
    "patience": "evaluations without improvement before stopping early",
    "checkpoint_every": "steps between checkpoints (a multiple of --validate-every)",
    "max_validation_pairs": "validation pairs evaluated (a fixed random subset)",
    "seed": "seed of the model's initialisation and the batches",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from openmm_timewarp.proposals.cartesian import PRESETS

    parser = subparsers.add_parser(
        "train",
        help="fit a proposal model by maximum likelihood and export it as a model file",
        description="Fit a proposal model to a `timewarp simulate` data folder by maximum "
        "likelihood (Adam with warm-up, gradient clipping, early stopping on the validation NLL; "
        "the data are split by time, docs/data.md) and export the best model to OUTPUT/model.pt "
        "with its metadata. OUTPUT keeps a snapshot of the data, checkpoints and log.csv: running "
        "the same command again resumes exactly. --family ic-mixture combines two trained "
        "folders instead (--conditional, --independent, --weight).",
    )
    parser.add_argument(
        "data",
        type=Path,
        nargs="*",
        help="data folder written by `timewarp simulate`; several folders, one per molecule, "
        "train one transferable timewarp-flow, ic-rotor or ic-backbone. The frame-trained "
        "families (ic-independent, ic-rotor, ic-backbone) also take `timewarp sample` chain "
        "folders (or its output folder): their frames join the MD data of the same molecule",
    )
    parser.add_argument(
        "--chain-burn-in",
        type=float,
        default=DEFAULT_CHAIN_BURN_IN,
        help="fraction of each chain's committed frames dropped before training on it "
        f"(default {DEFAULT_CHAIN_BURN_IN:g})",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="training folder")
    parser.add_argument("--family", choices=TRAIN_FAMILIES, required=True)
    parser.add_argument(
        "--tau-ps",
        type=float,
        help="lag of the training pairs (x(t), x(t + tau)), required for ic-conditional and "
        "timewarp-flow; for ic-independent, ic-rotor and ic-backbone (trained on frames) the "
        f"nominal time per step stored in the model (default {INDEPENDENT_NOMINAL_TAU_PS:g})",
    )
    parser.add_argument("--name", help="model name (default: the data folder's name)")
    parser.add_argument(
        "--model-file", type=Path, help=f"where to export the model (default OUTPUT/{MODEL_FILE})"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    flow = parser.add_argument_group("timewarp-flow")
    flow.add_argument("--preset", choices=PRESETS, help=f"flow size (default {DEFAULT_PRESET})")
    internal = parser.add_argument_group("ic-independent and ic-conditional (spline flows)")
    internal.add_argument("--num-couplings", type=int, default=4, help="coupling layers")
    internal.add_argument("--hidden", type=int, default=256, help="conditioner width")
    internal.add_argument("--num-bins", type=int, default=8, help="spline bins")
    mixture = parser.add_argument_group("ic-mixture (from two folders trained here)")
    mixture.add_argument("--conditional", type=Path, help="training folder of an ic-conditional")
    mixture.add_argument("--independent", type=Path, help="training folder of an ic-independent")
    mixture.add_argument("--weight", type=float, help="probability of the conditional component")
    optimisation = parser.add_argument_group("optimisation")
    for setting in fields(TrainingSettings):
        optimisation.add_argument(
            f"--{setting.name.replace('_', '-')}",
            type=type(setting.default),
            default=setting.default,
            help=f"{_SETTING_HELP[setting.name]} (default {setting.default})",
        )
    fine_tune = parser.add_argument_group(
        "energy fine-tune (after maximum likelihood, from its best model; docs/training.md)"
    )
    for setting in fields(FineTuneSettings):
        default = 0 if setting.name == "steps" else setting.default
        fine_tune.add_argument(
            f"--fine-tune-{setting.name.replace('_', '-')}",
            type=type(setting.default),
            default=default,
            choices=OBJECTIVES if setting.name == "objective" else None,
            help=f"{SETTING_HELP[setting.name]} (default {default})",
        )
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from openmm_timewarp.training.folder import export_mixture, training_recipe
    from openmm_timewarp.training.pipeline import train_folder

    has_chains = _check_train_options(args)
    # Bad fine-tune options are refused before training starts.
    fine_tune = _fine_tune_settings(args) if args.fine_tune_steps else None
    if args.family == "ic-mixture":
        model_path = export_mixture(
            args.conditional, args.independent, args.weight, args.name, args.output, args.model_file
        )
        print(f"ic-mixture (weight {args.weight}) written to {model_path}")
        return 0
    settings = TrainingSettings(
        **{name: getattr(args, name) for name in TrainingSettings.__dataclass_fields__}
    )
    options = {**vars(args), "preset": args.preset or DEFAULT_PRESET}
    architecture = {name: options[name] for name in FAMILIES[args.family].architecture_options}
    recipe = training_recipe(args.family, args.data, args.tau_ps, architecture, settings)
    if has_chains:
        recipe["chain_burn_in"] = args.chain_burn_in  # only then, so earlier trainings resume
    trained = train_folder(
        args.output,
        recipe,
        args.data,
        args.name,
        fine_tune,
        args.model_file,
        progress=not args.no_progress,
    )
    if trained.model_path is None:  # a torchrun process other than 0
        return 0
    result, cpu_seconds = trained.result, trained.folder.record["cpu_seconds"]
    print(
        f"{args.family}: best validation NLL {result.best_validation_nll:.4f} at step "
        f"{result.best_step} of {result.steps}{' (stopped early)' if result.stopped_early else ''}"
        f", {cpu_seconds:.0f} s CPU in all; model written to {trained.model_path}"
    )
    return 0


def _fine_tune_settings(args: argparse.Namespace) -> FineTuneSettings:
    """The ``--fine-tune-*`` options as checked settings for the family."""
    values = {
        name: getattr(args, f"fine_tune_{name}") for name in FineTuneSettings.__dataclass_fields__
    }
    return settings_for_family(args.family, **values)


def _check_train_options(args: argparse.Namespace) -> bool:
    """Refuse options that do not belong to the chosen family, naming what to do instead;
    whether DATA holds chain folders."""
    from openmm_timewarp.data.chain_data import check_burn_in, split_data_folders

    mixture_options = [args.conditional, args.independent, args.weight]
    if args.family == "ic-mixture":
        if args.data:
            raise ValueError("ic-mixture combines two trained folders: give no DATA folder")
        if any(option is None for option in mixture_options):
            raise ValueError(
                "ic-mixture needs --conditional FOLDER, --independent FOLDER and --weight"
            )
        if args.tau_ps is not None or args.preset is not None:
            raise ValueError("an ic-mixture takes tau from its conditional: no --tau-ps, --preset")
        return False
    if not args.data:
        raise ValueError(f"{args.family} trains on a data folder: give DATA (`timewarp simulate`)")
    check_burn_in(args.chain_burn_in)
    md, chains = split_data_folders(args.data)
    if chains and not FAMILIES[args.family].trains_on_frames:
        raise ValueError(
            f"{args.family} learns x(t + tau) from x(t), and consecutive frames of a Metropolis-"
            f"Hastings chain ({chains[0].directory}) are not dynamics at any lag: train it on "
            "`timewarp simulate` data only (chains serve ic-independent, ic-rotor, ic-backbone)"
        )
    if not md:
        raise ValueError(
            "chain folders join the MD data of their molecule: give the `timewarp simulate` "
            "folder of each sampled molecule too"
        )
    if len(md) > 1 and not FAMILIES[args.family].transferable:
        raise ValueError(
            f"{args.family} is tied to one molecule: give one DATA folder (several folders train "
            "a transferable --family timewarp-flow, ic-rotor or ic-backbone)"
        )
    if any(option is not None for option in mixture_options):
        raise ValueError("--conditional, --independent and --weight are for --family ic-mixture")
    if args.family != "timewarp-flow" and args.preset is not None:
        raise ValueError("--preset sizes a timewarp-flow; the IC families take --hidden etc.")
    if not FAMILIES[args.family].trains_on_frames and args.tau_ps is None:
        raise ValueError(f"{args.family} learns x(t + tau) from x(t): give --tau-ps")
    if args.tau_ps is not None and not args.tau_ps > 0:
        raise ValueError(f"--tau-ps must be positive, got {args.tau_ps}")
    return bool(chains)
