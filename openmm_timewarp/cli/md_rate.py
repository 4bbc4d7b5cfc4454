"""``timewarp md-rate``: long runs of the benchmark's MD baselines, for MD's ESS per second."""

from __future__ import annotations

import argparse
from pathlib import Path

from openmm_timewarp.cli.benchmark import add_reference_arguments
from openmm_timewarp.data.peptides import TERMINI
from openmm_timewarp.evaluation.md_rates import record_long_runs
from openmm_timewarp.evaluation.settings import MD_PROTOCOLS, BenchmarkSettings

#: A long run's default frame spacing: MD's slow coordinates decorrelate over tens of ps.
FRAME_INTERVAL_PS = 1.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``timewarp md-rate`` on a subparsers object (sets ``handler``)."""
    parser = subparsers.add_parser(
        "md-rate",
        help="long runs of the benchmark's MD baselines, for `timewarp benchmark --md-rates`",
        description="Run each MD baseline of `timewarp benchmark` once, exactly as the benchmark "
        "runs it (System, integrator, start frame), for a wall-clock budget, and write its frames "
        "and wall time to OUTPUT/<baseline>/. `timewarp benchmark --md-rates OUTPUT` then takes "
        "MD's ESS per second from these runs where they are at least 20 integrated "
        "autocorrelation times long. Run it on the machine, platform and load of the benchmark; "
        "a rerun replaces the runs (each is one timed measurement), except a run of the same "
        "command that was interrupted: it is saved every 900 s and continues from its last save.",
    )
    defaults = BenchmarkSettings()
    parser.add_argument("sequence", help="one-letter codes, e.g. A (alanine dipeptide when capped)")
    parser.add_argument("--termini", choices=TERMINI, default="capped")
    parser.add_argument(
        "--system",
        type=Path,
        metavar="SYSTEM_XML",
        help="the System the benchmark runs (`timewarp build --system`); default: amber14-all "
        "+ OBC2",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder of the runs")
    parser.add_argument(
        "--baselines", nargs="+", choices=tuple(MD_PROTOCOLS), default=list(MD_PROTOCOLS)
    )
    parser.add_argument("--budget", type=float, default=300.0, help="wall s per baseline")
    parser.add_argument("--frame-interval-ps", type=float, default=FRAME_INTERVAL_PS)
    add_reference_arguments(parser, defaults)
    parser.add_argument("--temperature", type=float, default=defaults.temperature_K, help="kelvin")
    parser.add_argument("--platform", default=defaults.platform)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_md_rate_command)


def _md_rate_command(args: argparse.Namespace) -> int:
    settings = BenchmarkSettings(
        budget_s=args.budget,
        samplers=tuple(args.baselines),
        temperature_K=args.temperature,
        platform=args.platform,
        md_frame_interval_ps=args.frame_interval_ps,
        reference_ns=args.reference_ns,
        seed=args.seed,
    )
    records = record_long_runs(
        args.sequence,
        args.output,
        settings,
        termini=args.termini,
        reference_dir=args.reference,
        cache_dir=args.cache,
        system_file=args.system,
        show_progress=not args.no_progress,
    )
    for name, record in records.items():
        print(
            f"{args.output / name}: {record['simulated_ns']:.3g} ns in {record['wall_s']:.1f} s "
            f"({record['wall_s_per_ns']:.3g} s per ns), {record['frames']} frames every "
            f"{record['frame_interval_ps']:g} ps"
        )
    return 0
