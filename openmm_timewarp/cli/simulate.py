"""``timewarp simulate``: resumable MD trajectories, the training data."""

from __future__ import annotations

import argparse
from pathlib import Path

from openmm_timewarp.cli.common import non_negative_float, positive_float
from openmm_timewarp.data.peptides import TERMINI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
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
