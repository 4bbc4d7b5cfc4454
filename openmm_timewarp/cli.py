"""The ``timewarp`` command line.

Each subcommand is a function that registers its parser on the subparsers and sets ``handler``;
adding one (``train``, ``benchmark``, ...) means writing such a function and listing it in
``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from openmm_timewarp.benchmark import add_benchmark_parser
from openmm_timewarp.peptides import TERMINI

Register = Callable[[argparse._SubParsersAction], None]


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

    from openmm_timewarp.peptides import build_peptide, create_system

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
    from openmm_timewarp.md import BASINS

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
    parser.add_argument("--length-ns", type=float, required=True, help="production length of each")
    parser.add_argument("--frame-interval-ps", type=float, default=1.0)
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--friction-per-ps", type=float, default=0.3)
    parser.add_argument("--temperature", type=float, default=310.0, help="kelvin")
    parser.add_argument("--equilibration-ps", type=float, default=20.0)
    parser.add_argument("--checkpoint-interval-ps", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1, help="trajectory i uses seed + i")
    parser.add_argument("--processes", type=int, default=1, help="trajectories run at a time")
    parser.add_argument(
        "--round-ns",
        type=float,
        help="advance all trajectories together in rounds of this length, so that data read "
        "before the end covers every start (default: each runs to the end in turn)",
    )
    parser.add_argument("--platform", default="Reference")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-o", "--output", type=Path, required=True, help="data folder")
    parser.set_defaults(handler=_simulate)


def _steps(interval_ps: float, timestep_fs: float, what: str) -> int:
    steps = interval_ps * 1000.0 / timestep_fs
    if steps < 1 or abs(steps - round(steps)) > 1e-9:
        raise ValueError(
            f"{what} ({interval_ps} ps) must be a whole number of {timestep_fs} fs steps."
        )
    return round(steps)


def _simulate(args: argparse.Namespace) -> int:
    from openmm_timewarp.md import RunSettings, parse_start, run_many

    frame_steps = _steps(args.frame_interval_ps, args.timestep_fs, "--frame-interval-ps")
    num_frames = round(args.length_ns * 1000.0 / args.frame_interval_ps)
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
    from openmm_timewarp.datasets import list_trajectories

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


#: Subcommand registrations, in the order ``--help`` lists them.
SUBCOMMANDS: list[Register] = [_add_build, _add_simulate, _add_info, add_benchmark_parser]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timewarp",
        description="Timewarp for OpenMM: data generation, training and evaluation tools.",
    )
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
    except (ValueError, RuntimeError, OSError) as error:
        print(f"timewarp {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
