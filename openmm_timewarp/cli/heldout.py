"""``timewarp heldout``: Timewarp against long MD runs on peptides drawn from a held-out list."""

from __future__ import annotations

import argparse
from pathlib import Path

from openmm_timewarp.cli.common import positive_float
from openmm_timewarp.data.peptides import TERMINI
from openmm_timewarp.evaluation.heldout import TABLE_FILE, HeldoutSettings, run_heldout
from openmm_timewarp.evaluation.heldout_draw import (
    HELD_OUT_LISTS,
    draw_peptides,
    held_out_sequences,
)
from openmm_timewarp.evaluation.settings import MD_HMR, MD_PROTOCOLS, BenchmarkSettings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``timewarp heldout`` on a subparsers object (sets ``handler``)."""
    parser = subparsers.add_parser(
        "heldout",
        help="Timewarp vs long MD runs on peptides drawn at random from a held-out list",
        description="For COUNT peptides drawn at random (with a printed seed) from a held-out "
        "list, or the sequences given: one long MD run (as `timewarp md-rate`; a coordinate's "
        "rate counts only where the run is 20 integrated autocorrelation times long), then "
        "Timewarp MH with the model, side by side on one platform between two short windows of "
        "the same MD that time MD's wall s per ns; ESS/s ratios with errors for MD's slowest "
        "backbone dihedral and TIC0, backbone-basin populations against the reference, and the "
        "time to visit every reference state. One folder per peptide; a rerun resumes. Writes "
        "OUTPUT/table.md and prints it.",
    )
    peptides = parser.add_mutually_exclusive_group(required=True)
    peptides.add_argument(
        "--held-out",
        choices=sorted(HELD_OUT_LISTS),
        help="draw COUNT peptides from this held-out list",
    )
    peptides.add_argument("--sequences", nargs="+", help="these sequences (one-letter codes)")
    parser.add_argument("--count", type=int, default=16, help="peptides drawn from --held-out")
    parser.add_argument("--draw-seed", type=int, default=1, help="seed of the random draw")
    parser.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first SKIP peptides of the draw (those an earlier table of the same "
        "seed used): the next COUNT, none of them seen before",
    )
    parser.add_argument("--model", help="proposal-model file or bundled name (required to run)")
    parser.add_argument("--termini", choices=TERMINI, default="zwitterionic")
    parser.add_argument("-o", "--output", type=Path, help="evaluation folder (required to run)")
    parser.add_argument(
        "--references",
        type=Path,
        help="folder of `timewarp simulate` references, one per sequence (DIR/SEQUENCE); "
        "default: the data-protocol reference generated under --cache",
    )
    settings = HeldoutSettings()
    defaults = BenchmarkSettings()
    parser.add_argument("--reference-ns", type=positive_float, default=defaults.reference_ns)
    parser.add_argument("--cache", type=Path, default=Path("data/benchmark"))
    parser.add_argument("--md-baseline", choices=tuple(MD_PROTOCOLS), default=MD_HMR)
    parser.add_argument(
        "--md-budget",
        type=positive_float,
        default=settings.md_budget_s,
        help="wall s of MD; rerun with a larger one to continue the saved MD runs (their "
        "peptides are evaluated afresh)",
    )
    parser.add_argument(
        "--timewarp-budget",
        type=positive_float,
        default=settings.timewarp_budget_s,
        help="wall s of Timewarp",
    )
    parser.add_argument(
        "--exploration-budget",
        type=positive_float,
        help="wall s of Timewarp in exploration mode (not exact), for its time to find every "
        "state (default: not run)",
    )
    parser.add_argument(
        "--md-timing",
        type=positive_float,
        default=settings.md_timing_s,
        help="wall s of MD timed beside Timewarp, half right before it and half right after: MD's "
        "ESS/s is its long run's ESS per ns at this wall time per ns (the machine's speed drifts "
        "over the hours of a long run)",
    )
    parser.add_argument(
        "--exploration-threshold",
        type=positive_float,
        default=defaults.exploration_threshold_kj_mol,
        help="kJ/mol",
    )
    parser.add_argument(
        "--md-frame-interval-ps", type=positive_float, default=settings.md_frame_interval_ps
    )
    parser.add_argument("--tica-lag-ps", type=positive_float, default=defaults.tica_lag_ps)
    parser.add_argument(
        "--timewarp-frame-interval", type=int, default=defaults.timewarp_frame_interval
    )
    parser.add_argument("--max-proposal-batch", type=int, default=defaults.max_proposal_batch)
    parser.add_argument("--temperature", type=positive_float, default=defaults.temperature_K)
    parser.add_argument("--platform", default=defaults.platform)
    parser.add_argument("--torch-threads", type=int, default=defaults.torch_threads)
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="run a transferable model's proposal as an AOTInductor package compiled for this "
        "CPU (once per molecule, about a minute; several times faster per call)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the samplers")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="peptides evaluated at once, one process each running its MD then its Timewarp "
        "(one job per free core; progress bars off)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--print-peptides",
        action="store_true",
        help="print the drawn sequences one per line and exit (for shell loops: references)",
    )
    parser.set_defaults(handler=_heldout_command)


def _heldout_command(args: argparse.Namespace) -> int:
    if args.held_out is not None:
        peptides = draw_peptides(
            held_out_sequences(args.held_out), args.count, args.draw_seed, skip=args.skip
        )
        if args.print_peptides:
            print("\n".join(peptides))
            return 0
        after = f" after the first {args.skip}" if args.skip else ""
        print(
            f"{args.count} of the {args.held_out} held-out list drawn with seed "
            f"{args.draw_seed}{after}: {' '.join(peptides)}"
        )
    else:
        peptides = [sequence.upper() for sequence in args.sequences]
        if args.print_peptides:
            print("\n".join(peptides))
            return 0
    if args.model is None or args.output is None:
        raise ValueError("give --model and -o/--output (or --print-peptides)")
    settings = HeldoutSettings(
        md_budget_s=args.md_budget,
        timewarp_budget_s=args.timewarp_budget,
        md_baseline=args.md_baseline,
        md_frame_interval_ps=args.md_frame_interval_ps,
        exploration_budget_s=args.exploration_budget,
        md_timing_s=args.md_timing,
        benchmark=BenchmarkSettings(
            exploration_threshold_kj_mol=args.exploration_threshold,
            temperature_K=args.temperature,
            platform=args.platform,
            timewarp_frame_interval=args.timewarp_frame_interval,
            max_proposal_batch=args.max_proposal_batch,
            reference_ns=args.reference_ns,
            tica_lag_ps=args.tica_lag_ps,
            seed=args.seed,
            torch_threads=args.torch_threads,
            compiled=args.compiled,
        ),
    )
    run_heldout(
        peptides,
        args.model,
        args.output,
        settings,
        termini=args.termini,
        references=args.references,
        cache_dir=args.cache,
        show_progress=not args.no_progress,
        jobs=args.jobs,
    )
    print((args.output / TABLE_FILE).read_text())
    return 0
