"""The ``timewarp`` command line.

Each subcommand is a function that registers its parser on the subparsers and sets ``handler``;
adding one (``train``, ``benchmark``, ...) means writing such a function and listing it in
``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from openmm import app

from openmm_timewarp.checkpoints import load_checkpoint, load_model_state, save_checkpoint
from openmm_timewarp.data.dipeptides import add_dipeptides_parser
from openmm_timewarp.data.peptides import TERMINI
from openmm_timewarp.evaluation.benchmark import add_benchmark_parser
from openmm_timewarp.evaluation.reference import add_reference_parser
from openmm_timewarp.models.contract import ModelMetadata
from openmm_timewarp.sampling.chains import add_sample_parser
from openmm_timewarp.training.loop import PeptideData

Register = Callable[[argparse._SubParsersAction], None]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Shows every option's default in ``--help``, except where there is none to show (None, a
    flag that is off) or where the help text already speaks of it."""

    def _format_action(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and action.help != argparse.SUPPRESS and "default" not in text.lower():
            default = action.default
            if isinstance(default, (list, tuple)):
                default = " ".join(map(str, default))
            default = str(default).replace("%", "%%")
            action = copy.copy(action)
            action.help = f"{text} (default: {default})" if text else f"default: {default}"
        return super()._format_action(action)


class CommandParser(argparse.ArgumentParser):
    """The parser of ``timewarp`` and of each subcommand (argparse passes the class on to
    subparsers): defaults shown in every ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def _add_build(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build a peptide from its sequence and write a PDB (and optionally the System XML)",
        description="Build a peptide (amber14-all + OBC2 as a native GBSAOBCForce) from one-letter "
        "codes, protonated at pH 7, and print its atom count and potential energy.",
    )
    parser.add_argument("sequence", help="one-letter codes, e.g. A (alanine dipeptide when capped)")
    parser.add_argument("--termini", choices=TERMINI, default="capped")
    parser.add_argument("--phi", type=float, help="backbone phi of every residue, degrees")
    parser.add_argument("--psi", type=float, help="backbone psi of every residue, degrees")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PDB file to write")
    parser.add_argument("--system", type=Path, help="also write the serialized System (XML)")
    parser.set_defaults(handler=_build)


def _build(args: argparse.Namespace) -> int:
    import openmm
    import openmm.app as app

    from openmm_timewarp.data.peptides import build_peptide, create_system

    modeller = build_peptide(args.sequence, args.termini, phi=args.phi, psi=args.psi)
    system = create_system(modeller.topology)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    energy = context.getState(getEnergy=True).getPotentialEnergy()
    try:
        with open(args.output, "w") as handle:
            app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
        if args.system is not None:
            args.system.write_text(openmm.XmlSerializer.serialize(system))
    except OSError as error:
        raise ValueError(f"Cannot write {error.filename}: {error.strerror}.") from None
    print(f"{args.output}: {modeller.topology.getNumAtoms()} atoms, potential energy {energy}")
    return 0


def _add_simulate(subparsers: argparse._SubParsersAction) -> None:
    from openmm_timewarp.data.md import BASINS

    parser = subparsers.add_parser(
        "simulate",
        help="run resumable MD trajectories (the training data)",
        description="Run LangevinMiddleIntegrator MD (Reference platform, amber14 + OBC2, no "
        "constraints) for one or more trajectories, each in OUTPUT/<index>-<start>/. Running the "
        "same command again resumes every trajectory from its last checkpoint.",
    )
    parser.add_argument("sequence", help="one-letter codes, e.g. A (alanine dipeptide when capped)")
    parser.add_argument("--termini", choices=TERMINI, default="capped")
    parser.add_argument(
        "--start",
        action="append",
        metavar="BASIN|PHI,PSI",
        help=f"start basin of one trajectory, repeatable: {', '.join(BASINS)} or PHI,PSI in "
        "degrees (built with these angles, restrained during equilibration, then released); "
        "default: one trajectory from an extended chain. Write --start=-70,-40 for a negative PHI.",
    )
    parser.add_argument(
        "--length-ns", type=positive_float, required=True, help="production length of each"
    )
    parser.add_argument("--frame-interval-ps", type=positive_float, default=1.0)
    parser.add_argument("--timestep-fs", type=positive_float, default=0.5)
    parser.add_argument("--friction-per-ps", type=positive_float, default=0.3)
    parser.add_argument("--temperature", type=positive_float, default=310.0, help="kelvin")
    parser.add_argument("--equilibration-ps", type=non_negative_float, default=20.0)
    parser.add_argument("--checkpoint-interval-ps", type=positive_float, default=100.0)
    parser.add_argument("--seed", type=int, default=1, help="trajectory i uses seed + i")
    parser.add_argument("--processes", type=int, default=1, help="trajectories run at a time")
    parser.add_argument(
        "--round-ns",
        type=positive_float,
        help="advance all trajectories together in rounds of this length, so that data read "
        "before the end covers every start (default: each runs to the end in turn)",
    )
    parser.add_argument(
        "--hydrogen-constraints",
        action="store_true",
        help="constrain bonds to hydrogen (with --timestep-fs 2: a 4x cheaper reference for "
        "backbone free energies; not the training-data protocol)",
    )
    parser.add_argument("--platform", default="Reference")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-o", "--output", type=Path, required=True, help="data folder")
    parser.set_defaults(handler=_simulate)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {text}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _steps(interval_ps: float, timestep_fs: float, what: str) -> int:
    steps = interval_ps * 1000.0 / timestep_fs
    if steps < 1 or abs(steps - round(steps)) > 1e-9:
        raise ValueError(
            f"{what} ({interval_ps} ps) must be a whole number of {timestep_fs} fs steps."
        )
    return round(steps)


def _simulate(args: argparse.Namespace) -> int:
    from openmm_timewarp.data.md import RunSettings, parse_start, run_many

    frame_steps = _steps(args.frame_interval_ps, args.timestep_fs, "--frame-interval-ps")
    num_frames = round(args.length_ns * 1000.0 / args.frame_interval_ps)
    if num_frames < 1:
        raise ValueError(
            f"--length-ns {args.length_ns} is shorter than one frame "
            f"(--frame-interval-ps {args.frame_interval_ps})"
        )
    checkpoint_frames = max(1, round(args.checkpoint_interval_ps / args.frame_interval_ps))
    round_frames = None
    if args.round_ns is not None:
        round_frames = max(1, round(args.round_ns * 1000.0 / args.frame_interval_ps))
    labels = args.start or [None]
    runs = []
    for index, label in enumerate(labels):
        settings = RunSettings(
            sequence=args.sequence,
            termini=args.termini,
            start=parse_start(label) if label is not None else None,
            temperature_K=args.temperature,
            timestep_fs=args.timestep_fs,
            friction_per_ps=args.friction_per_ps,
            frame_interval_steps=frame_steps,
            num_frames=num_frames,
            equilibration_ps=args.equilibration_ps,
            seed=args.seed + index,
            platform=args.platform,
            hydrogen_constraints=args.hydrogen_constraints,
        )
        name = (label or "extended").replace(",", "_")
        runs.append((args.output / f"{index:02d}-{name}", settings))
    for directory, frames in run_many(
        runs, args.processes, checkpoint_frames, round_frames, show_progress=not args.no_progress
    ):
        print(f"{directory}: {frames} frames")
    return 0


def _add_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="summarise the trajectories in a data folder",
        description="List each trajectory of a data folder: start, frames committed, length.",
    )
    parser.add_argument(
        "--phi",
        action="store_true",
        help="also give the fraction of frames with phi > 0 (every residue's phi), the rare "
        "region of alanine dipeptide",
    )
    parser.add_argument("data", type=Path, help="data folder written by `timewarp simulate`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    from openmm_timewarp.data.datasets import list_trajectories

    trajectories = list_trajectories(args.data)
    summaries = [t.summary() for t in trajectories]
    if args.phi:
        for trajectory, summary in zip(trajectories, summaries, strict=True):
            phi, _ = trajectory.backbone_angles()
            summary["phi_positive_fraction"] = (phi > 0).mean(axis=0).tolist() if len(phi) else None
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    total_ns = 0.0
    for summary in summaries:
        total_ns += summary["length_ns"]
        phi_text = ""
        if summary.get("phi_positive_fraction") is not None:
            fractions = ", ".join(f"{f:.4f}" for f in summary["phi_positive_fraction"])
            phi_text = f", phi > 0 in {fractions} of frames"
        print(
            f"{summary['name']}: {summary['sequence']} ({summary['termini']}), start "
            f"{summary['start']}, {summary['frames']}/{summary['target_frames']} frames, "
            f"{summary['length_ns']:.3f} ns{phi_text}"
        )
    noun = "trajectory" if len(trajectories) == 1 else "trajectories"
    print(f"{len(trajectories)} {noun}, {total_ns:.3f} ns in all")
    return 0


TRAIN_FAMILIES = ("ic-independent", "ic-conditional", "timewarp-flow", "ic-rotor", "ic-mixture")
TRAIN_RECORD_FILE = "train.json"
TRAIN_DATA_FILE = "data.pt"
TRAIN_TOPOLOGY_FILE = "topology.pdb"
MODEL_FILE = "model.pt"
#: Families that train one model on several molecules (one data folder each).
TRANSFERABLE_FAMILIES = ("timewarp-flow", "ic-rotor")
#: Families trained on frames rather than pairs (x(t), x(t + tau)).
FRAME_FAMILIES = ("ic-independent", "ic-rotor")
#: Nominal time per step of an independence proposal (Timewarp's tau), stored in its metadata.
INDEPENDENT_NOMINAL_TAU_PS = 500.0
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


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from dataclasses import fields

    from openmm_timewarp.proposals.cartesian import PRESETS
    from openmm_timewarp.training.loop import TrainingSettings

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
        "train one transferable timewarp-flow (atom names as types, any number of atoms)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="training folder")
    parser.add_argument("--family", choices=TRAIN_FAMILIES, required=True)
    parser.add_argument(
        "--tau-ps",
        type=float,
        help="lag of the training pairs (x(t), x(t + tau)), required for ic-conditional and "
        "timewarp-flow; for ic-independent and ic-rotor (trained on frames) the nominal time "
        "per step stored "
        f"in the model (default {INDEPENDENT_NOMINAL_TAU_PS:g})",
    )
    parser.add_argument("--name", help="model name (default: the data folder's name)")
    parser.add_argument(
        "--model-file", type=Path, help=f"where to export the model (default OUTPUT/{MODEL_FILE})"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    flow = parser.add_argument_group("timewarp-flow")
    flow.add_argument("--preset", choices=PRESETS, help="flow size (default cpu-small)")
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
    from openmm_timewarp.training.finetune import OBJECTIVES, SETTING_HELP, FineTuneSettings

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


def _write_json(path: Path, record: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ValueError(f"{path.parent} is not {what}: it has no {path.name}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is damaged ({error}); use a new output folder") from None


class RotationAugmented(torch.nn.Module):
    """Training view of a Timewarp flow: each pair turned by a uniform random rotation.

    The flow is not rotation equivariant, so it learns orientations from the data. The rotation
    and the flow's own auxiliary draw of training call k come from torch's generator seeded with
    (seed, k), and k is a buffer of the state dict, so a run resumed from a checkpoint draws the
    same numbers as one that was not interrupted; validation draws from a fixed seed. Under
    torchrun each process has its own stream (seeded with its rank as well).
    """

    def __init__(self, flow: torch.nn.Module, seed: int) -> None:
        super().__init__()
        self.flow = flow
        self.seed = seed
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            if not self.training:
                torch.manual_seed(self.seed)
                return self.flow.training_nll(x_cond, x_next, atom_types)
            seed = self.seed * 1_000_003 + int(self.calls)
            if torch.distributed.is_initialized() and torch.distributed.get_rank() > 0:
                # Process r > 0 of a torchrun launch: its own rotations and auxiliary noise
                # (torch's CPU generator keeps only 32 bits of a seed, hence the hashing).
                from numpy.random import SeedSequence

                rank = torch.distributed.get_rank()
                seed = int(SeedSequence([seed, rank]).generate_state(1)[0])
            torch.manual_seed(seed)
            self.calls += 1
            rotation = random_rotations(x_cond.shape[0])
            return self.flow.training_nll(x_cond @ rotation, x_next @ rotation, atom_types)


def random_rotations(count: int) -> torch.Tensor:
    """``count`` uniform random rotation matrices ``[count, 3, 3]`` from torch's generator."""
    w, x, y, z = torch.nn.functional.normalize(torch.randn(count, 4), dim=1).unbind(1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], 1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], 1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1),
        ],
        1,
    )


def _check_train_options(args: argparse.Namespace) -> None:
    """Refuse options that do not belong to the chosen family, naming what to do instead."""
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
        return
    if not args.data:
        raise ValueError(f"{args.family} trains on a data folder: give DATA (`timewarp simulate`)")
    if len(args.data) > 1 and args.family not in TRANSFERABLE_FAMILIES:
        raise ValueError(
            f"{args.family} is tied to one molecule: give one DATA folder (several folders train "
            "a transferable --family timewarp-flow or ic-rotor)"
        )
    if any(option is not None for option in mixture_options):
        raise ValueError("--conditional, --independent and --weight are for --family ic-mixture")
    if args.family != "timewarp-flow" and args.preset is not None:
        raise ValueError("--preset sizes a timewarp-flow; the IC families take --hidden etc.")
    if args.family in ("ic-conditional", "timewarp-flow") and args.tau_ps is None:
        raise ValueError(f"{args.family} learns x(t + tau) from x(t): give --tau-ps")
    if args.tau_ps is not None and not args.tau_ps > 0:
        raise ValueError(f"--tau-ps must be positive, got {args.tau_ps}")


def _training_recipe(args: argparse.Namespace) -> dict:
    """What determines the trained model; a resumed run must be given the same."""
    from dataclasses import asdict

    from openmm_timewarp.training.loop import TrainingSettings

    settings = TrainingSettings(
        **{name: getattr(args, name) for name in TrainingSettings.__dataclass_fields__}
    )
    if args.family == "timewarp-flow":
        architecture = {"preset": args.preset or "cpu-small"}
    elif args.family == "ic-rotor":
        architecture = {"hidden": args.hidden, "num_bins": args.num_bins}
    else:
        architecture = {
            "num_couplings": args.num_couplings,
            "hidden": args.hidden,
            "num_bins": args.num_bins,
        }
    independent = args.family in FRAME_FAMILIES
    return {
        "family": args.family,
        # One folder as a string, as in earlier versions, so that their trainings resume.
        "data": [str(d.resolve()) for d in args.data]
        if len(args.data) > 1
        else str(args.data[0].resolve()),
        "tau_ps": (args.tau_ps or INDEPENDENT_NOMINAL_TAU_PS) if independent else args.tau_ps,
        "pairs_tau_ps": None if independent else args.tau_ps,
        "architecture": architecture,
        "settings": asdict(settings),
    }


def _snapshot_training_data(data: Path, recipe: dict, output: Path) -> dict:
    """Copy the split data and the topology into the training folder; return the data facts.

    Training reads this snapshot, so a resumed run sees the same data while `timewarp simulate`
    keeps adding frames to the data folder.
    """
    import shutil

    from openmm_timewarp.data.datasets import list_trajectories
    from openmm_timewarp.data.md import TOPOLOGY_FILE
    from openmm_timewarp.data.peptides import FORCEFIELD_NAME
    from openmm_timewarp.training.loop import load_training_data

    trajectories = list_trajectories(data)
    temperatures = {t.settings.temperature_K for t in trajectories}
    if len(temperatures) != 1:
        raise ValueError(f"{data} mixes temperatures {sorted(temperatures)}; keep one per folder")
    train_pairs, validation_pairs = load_training_data(data, recipe["pairs_tau_ps"])
    save_checkpoint(
        {"train": train_pairs, "validation": validation_pairs}, output / TRAIN_DATA_FILE
    )
    shutil.copyfile(trajectories[0].directory / TOPOLOGY_FILE, output / TRAIN_TOPOLOGY_FILE)
    return {
        "temperature_K": temperatures.pop(),
        "forcefield": FORCEFIELD_NAME,
        "data_ns": sum(t.num_frames * t.frame_interval_ps for t in trajectories) / 1000.0,
        "frames": {t.directory.name: t.num_frames for t in trajectories},
        "train_pairs": len(train_pairs[0]),
        "validation_pairs": len(validation_pairs[0]),
    }


def _snapshot_peptides(folders: list[Path], recipe: dict, output: Path) -> dict:
    """:func:`_snapshot_training_data` for several molecules, one data folder each."""
    import io

    from openmm_timewarp.data.datasets import list_trajectories
    from openmm_timewarp.data.peptides import FORCEFIELD_NAME
    from openmm_timewarp.training.loop import load_training_data

    peptides, facts = [], {"data_ns": 0.0, "frames": {}, "train_pairs": 0, "validation_pairs": 0}
    temperatures = set()
    for folder in folders:
        trajectories = list_trajectories(folder)
        temperatures |= {t.settings.temperature_K for t in trajectories}
        train_pairs, validation_pairs = load_training_data(folder, recipe["pairs_tau_ps"])
        topology = trajectories[0].topology()
        pdb = io.StringIO()
        positions = train_pairs[0][0].double().numpy() * 10.0  # angstroms
        app.PDBFile.writeFile(topology, positions, pdb)
        name = folder.resolve().name
        if name in facts["frames"]:
            raise ValueError(f"two data folders are named {name}: one folder per molecule")
        peptides.append(
            {"name": name, "topology": pdb.getvalue(), "train": train_pairs,
             "validation": validation_pairs}
        )  # fmt: skip
        facts["data_ns"] += sum(t.num_frames * t.frame_interval_ps for t in trajectories) / 1e3
        facts["frames"][name] = {t.directory.name: t.num_frames for t in trajectories}
        facts["train_pairs"] += len(train_pairs[0])
        facts["validation_pairs"] += len(validation_pairs[0])
    if len(temperatures) != 1:
        raise ValueError(f"the data folders mix temperatures {sorted(temperatures)}; keep one")
    save_checkpoint({"peptides": peptides}, output / TRAIN_DATA_FILE)
    (output / TRAIN_TOPOLOGY_FILE).write_text(peptides[0]["topology"])
    return {**facts, "temperature_K": temperatures.pop(), "forcefield": FORCEFIELD_NAME}


def _flow_metadata(topology: app.Topology, record: dict) -> ModelMetadata:
    """Metadata of a Timewarp flow trained here: element vocabulary of the data's molecule, or
    for several molecules the residue-independent ``peptide-atom`` vocabulary and any size."""
    recipe, facts = record["recipe"], record["facts"]
    if isinstance(recipe["data"], list):
        return _transferable_metadata(record, "timewarp-flow")
    return ModelMetadata(
        name=record["name"],
        family="timewarp-flow",
        tau_ps=recipe["tau_ps"],
        temperature_K=facts["temperature_K"],
        forcefield=facts["forcefield"],
        atom_type_scheme="element",
        atom_types=sorted({atom.element.symbol for atom in topology.atoms()}),
        num_atoms=topology.getNumAtoms(),
    )


def _transferable_metadata(record: dict, family: str) -> ModelMetadata:
    """Metadata of a model trained on several molecules: ``peptide-atom`` vocabulary, any size."""
    from openmm_timewarp.data.dipeptides import peptide_atom_vocabulary

    return ModelMetadata(
        name=record["name"],
        family=family,
        tau_ps=record["recipe"]["tau_ps"],
        temperature_K=record["facts"]["temperature_K"],
        forcefield=record["facts"]["forcefield"],
        atom_type_scheme="peptide-atom",
        atom_types=list(peptide_atom_vocabulary()),
        num_atoms=None,
    )


@dataclass
class TrainingFolder:
    """What a `timewarp train` folder holds, with its model built (untrained parameters)."""

    path: Path
    record: dict  # train.json: recipe, facts, name, summary, cpu_seconds
    topology: app.Topology
    data: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "train" and "validation" pairs
    model: torch.nn.Module  # has training_nll; a flow comes wrapped in RotationAugmented
    atom_types: torch.Tensor  # of the (first) molecule
    peptides: list[PeptideData]  # what training fits: one entry per molecule

    @classmethod
    def open(cls, path: Path) -> TrainingFolder:
        return cls.with_record(
            path, _read_json(path / TRAIN_RECORD_FILE, "a `timewarp train` folder")
        )

    @classmethod
    def with_record(cls, path: Path, record: dict) -> TrainingFolder:
        """The folder's data and topology with the model that ``record`` describes."""
        from openmm_timewarp.models.contract import atom_types_for_topology
        from openmm_timewarp.proposals.cartesian import TimewarpProposal, preset
        from openmm_timewarp.proposals.ic.families import proposal_for_frames

        recipe = record["recipe"]
        topology = app.PDBFile(str(path / TRAIN_TOPOLOGY_FILE)).topology
        data = load_checkpoint(path / TRAIN_DATA_FILE)
        seed = recipe["settings"]["seed"]
        torch.manual_seed(seed)  # the layers' initial weights come from torch's generator
        if recipe["family"] == "timewarp-flow":
            metadata = _flow_metadata(topology, record)
            atom_types = torch.from_numpy(atom_types_for_topology(topology, metadata))
            config = preset(recipe["architecture"]["preset"], len(metadata.atom_types))
            model = RotationAugmented(TimewarpProposal(config), seed)
        elif recipe["family"] == "ic-rotor":
            from openmm_timewarp.proposals.rotors.network import RotorNetwork
            from openmm_timewarp.proposals.rotors.training import RotorTrainingModel

            metadata = _transferable_metadata(record, "ic-rotor")
            atom_types = torch.from_numpy(atom_types_for_topology(topology, metadata))
            network = RotorNetwork(len(metadata.atom_types), **recipe["architecture"])
            topologies = [_pdb_topology(p["topology"]) for p in data["peptides"]]
            model = RotorTrainingModel(network, topologies)
        else:
            model = proposal_for_frames(
                recipe["family"], topology, data["train"][1], seed=seed, **recipe["architecture"]
            )
            atom_types = torch.arange(topology.getNumAtoms())
        if "peptides" in data:
            peptides = [
                PeptideData(
                    p["train"],
                    p["validation"],
                    torch.from_numpy(
                        atom_types_for_topology(_pdb_topology(p["topology"]), metadata)
                    ),
                    p["name"],
                )
                for p in data["peptides"]
            ]
        else:
            peptides = [PeptideData(data["train"], data["validation"], atom_types)]
        return cls(path, record, topology, data, model, atom_types, peptides)

    def load_best(self) -> None:
        """Load the best parameters of a finished training into the model."""
        from openmm_timewarp.training.loop import BEST_MODEL_FILE

        if not (self.path / BEST_MODEL_FILE).is_file() or not self.record["summary"]:
            raise ValueError(f"{self.path} has not finished training: rerun its `timewarp train`")
        best = self.path / BEST_MODEL_FILE
        load_model_state(self.model, load_checkpoint(best), best)

    def save_record(self) -> None:
        _write_json(self.path / TRAIN_RECORD_FILE, self.record)

    def export(self, path: Path) -> None:
        """Export the model (best parameters loaded) with the training summary as metadata."""
        from dataclasses import replace

        from openmm_timewarp.models.contract import export
        from openmm_timewarp.proposals.ic.families import proposal_metadata

        recipe, facts = self.record["recipe"], self.record["facts"]
        training = {
            **{key: facts[key] for key in ("data_ns", "frames", "train_pairs", "validation_pairs")},
            **self.record["summary"],
            # Folder names, not this machine's paths: the file travels.
            "data": [Path(d).name for d in recipe["data"]]
            if isinstance(recipe["data"], list)
            else Path(recipe["data"]).name,
            "pairs_tau_ps": recipe["pairs_tau_ps"],
            "architecture": recipe["architecture"],
            "settings": recipe["settings"],
        }
        model = self.model
        if recipe["family"] == "ic-rotor":
            from openmm_timewarp.proposals.rotors.network import save_network

            save_network(
                model.network,
                path,
                replace(_transferable_metadata(self.record, "ic-rotor"), training=training),
            )
            return
        if recipe["family"] == "timewarp-flow":
            metadata = replace(_flow_metadata(self.topology, self.record), training=training)
            model = model.flow
        else:
            metadata = proposal_metadata(
                model,
                self.record["name"],
                recipe["tau_ps"],
                facts["temperature_K"],
                facts["forcefield"],
                training,
            )
        export(model, path, metadata, example_positions=self.peptides[0].validation[1][0])


def _pdb_topology(text: str) -> app.Topology:
    import io

    return app.PDBFile(io.StringIO(text)).topology


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create {path}: {error.strerror}") from None


def _train(args: argparse.Namespace) -> int:
    from openmm_timewarp.training.loop import distributed_process_group

    _check_train_options(args)
    if args.fine_tune_steps:
        _fine_tune_settings(args)  # bad fine-tune options are refused before training starts
    if args.family == "ic-mixture":
        return _export_mixture(args)
    # Under torchrun every process trains; process 0 alone writes the folder (docs/training.md).
    with distributed_process_group():
        return _train_in_process(args)


def _fine_tune_settings(args: argparse.Namespace):
    """The ``--fine-tune-*`` options as checked ``finetune.FineTuneSettings`` for the family."""
    from openmm_timewarp.training.finetune import FineTuneSettings, settings_for_family

    names = FineTuneSettings.__dataclass_fields__
    values = {name: getattr(args, f"fine_tune_{name}") for name in names}
    return settings_for_family(args.family, **values)


def _training_record(args: argparse.Namespace) -> dict:
    """The record of the training folder: read back on a rerun, else the folder is started."""
    recipe = _training_recipe(args)
    record_path = args.output / TRAIN_RECORD_FILE
    if record_path.exists():
        record = _read_json(record_path, "a `timewarp train` folder")
        if record["recipe"] != recipe:
            changed = sorted(key for key in recipe if record["recipe"].get(key) != recipe[key])
            raise ValueError(
                f"{args.output} holds a training with other {', '.join(changed)}: rerun with "
                f"the options it was started with ({record_path}) or use a new output folder"
            )
        if args.name:
            record["name"] = args.name
        folder = TrainingFolder.with_record(args.output, record)
        folder.save_record()
        return record
    created = not args.output.exists()
    _make_folder(args.output)
    try:
        if len(args.data) > 1 or args.family == "ic-rotor":
            facts = _snapshot_peptides(args.data, recipe, args.output)
            name = args.name or args.data[0].resolve().parent.name
        else:
            facts = _snapshot_training_data(args.data[0], recipe, args.output)
            name = args.name or args.data[0].resolve().name
        record = {"recipe": recipe, "facts": facts, "name": name, "summary": {}, "cpu_seconds": 0.0}
        # Written once the model could be built, so that a refused option leaves no record.
        folder = TrainingFolder.with_record(args.output, record)
        folder.save_record()
    except BaseException:
        if created:  # a folder this command made and could not start: leave nothing behind
            shutil.rmtree(args.output, ignore_errors=True)
        raise
    return record


def _train_in_process(args: argparse.Namespace) -> int:
    import time

    from openmm_timewarp.training.loop import (
        LOG_FILE,
        LOSS_PANELS,
        TrainingSettings,
        batch_size_per_process,
        is_main_process,
        on_main_process,
        plot_log,
        train_peptides,
    )

    batch_size_per_process(args.batch_size)  # before anything is written
    record = on_main_process(lambda: _training_record(args))
    folder = TrainingFolder.with_record(args.output, record)
    started = time.process_time()
    try:
        result = train_peptides(
            folder.model,
            folder.peptides,
            args.output,
            TrainingSettings(**record["recipe"]["settings"]),
            progress=not args.no_progress,
        )
    finally:
        # The CPU time of every run of this command (of process 0), interrupted ones included.
        if is_main_process():
            folder.record["cpu_seconds"] += time.process_time() - started
            folder.save_record()
    if not is_main_process():
        return 0
    folder.record["summary"] = {
        "steps": result.steps,
        "best_step": result.best_step,
        "best_validation_nll": result.best_validation_nll,
        "stopped_early": result.stopped_early,
        "wall_seconds": round(result.seconds, 1),
        "cpu_seconds": round(folder.record["cpu_seconds"], 1),
    }
    folder.save_record()
    plot_log(args.output / LOG_FILE, LOSS_PANELS)
    if args.fine_tune_steps:
        from openmm_timewarp.training.finetune import fine_tune_folder

        folder.record["summary"]["fine_tune"] = fine_tune_folder(
            folder, _fine_tune_settings(args), progress=not args.no_progress
        )
        folder.save_record()
    model_path = args.model_file or args.output / MODEL_FILE
    folder.export(model_path)
    print(
        f"{args.family}: best validation NLL {result.best_validation_nll:.4f} at step "
        f"{result.best_step} of {result.steps}{' (stopped early)' if result.stopped_early else ''}"
        f", {folder.record['cpu_seconds']:.0f} s CPU in all; model written to {model_path}"
    )
    return 0


def _export_mixture(args: argparse.Namespace) -> int:
    from openmm_timewarp.models.contract import export
    from openmm_timewarp.proposals.ic.families import ICMixtureProposal, proposal_metadata

    conditional = TrainingFolder.open(args.conditional)
    independent = TrainingFolder.open(args.independent)
    for folder, family in ((conditional, "ic-conditional"), (independent, "ic-independent")):
        if folder.record["recipe"]["family"] != family:
            raise ValueError(
                f"{folder.path} holds an {folder.record['recipe']['family']}, not an {family}"
            )
        folder.load_best()
    facts = conditional.record["facts"]
    if independent.record["facts"]["temperature_K"] != facts["temperature_K"]:
        raise ValueError("the two components were trained at different temperatures")
    mixture = ICMixtureProposal(conditional.model, independent.model, args.weight)
    training = {"weight": args.weight}
    for folder in (conditional, independent):
        summary = {**folder.record["summary"], "folder": str(folder.path.resolve())}
        training[folder.record["recipe"]["family"]] = summary
    metadata = proposal_metadata(
        mixture,
        args.name or conditional.record["name"],
        conditional.record["recipe"]["tau_ps"],
        facts["temperature_K"],
        facts["forcefield"],
        training,
    )
    _make_folder(args.output)
    model_path = args.model_file or args.output / MODEL_FILE
    example = conditional.data["validation"][1][0]
    export(mixture, model_path, metadata, example_positions=example)
    print(f"ic-mixture (weight {args.weight}) written to {model_path}")
    return 0


#: Subcommand registrations, in the order ``--help`` lists them.
def _add_resave(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resave",
        help="re-save model files with this version's checksum (same weights)",
        description="Re-save proposal-model files in place, with the checksum that this version "
        "verifies on load (docs/trust.md). For files written by older versions: loading one runs "
        "its TorchScript, so re-save only files you trust.",
    )
    parser.add_argument("models", nargs="+", type=Path, help="model files")
    parser.set_defaults(handler=_resave)


def _resave(args: argparse.Namespace) -> int:
    from openmm_timewarp.models.contract import resave

    for path in args.models:
        resave(path)
        print(f"{path}: re-saved with a checksum")
    return 0


SUBCOMMANDS: list[Register] = [
    _add_build,
    _add_simulate,
    _add_info,
    _add_train,
    add_benchmark_parser,
    add_sample_parser,
    _add_resave,
    add_reference_parser,
    add_dipeptides_parser,
]


def version_text() -> str:
    """The package's version and the OpenMM and torch its plugin was built against."""
    from openmm_timewarp import __version__, _built_against

    return (
        f"openmm-timewarp {__version__} (plugin built against OpenMM "
        f"{_built_against.OPENMM_VERSION}, torch {_built_against.TORCH_VERSION})"
    )


def make_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="timewarp",
        description="Timewarp for OpenMM: data generation, training and evaluation tools.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timewarp`` console script; bad input exits with status 2."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(
            f"timewarp {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, RuntimeError, OSError) as error:
        print(f"timewarp {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
