"""``timewarp benchmark``: Timewarp vs MD side by side for the same wall-clock budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from openmm_timewarp.data.peptides import TERMINI
from openmm_timewarp.evaluation.benchmark import run_benchmark
from openmm_timewarp.evaluation.settings import HMR_HYDROGEN_MASS_AMU, SAMPLERS, BenchmarkSettings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``timewarp benchmark`` on a subparsers object (sets ``handler``)."""
    parser = subparsers.add_parser(
        "benchmark",
        help="Timewarp vs MD side by side for the same wall-clock budget",
        description="Run TimewarpIntegrator (MH and exploration) and LangevinMiddleIntegrator "
        "(0.5 fs no constraints; 2 fs HBonds; 4 fs HBonds with hydrogen mass repartitioning to "
        f"{HMR_HYDROGEN_MASS_AMU:g} amu) on one peptide for the same wall-clock budget each, in "
        "one process on one platform, and write report.json, summary.md and PNG plots; the "
        "summary names the fastest MD baseline per coordinate and Timewarp's ratio to it.",
    )
    defaults = BenchmarkSettings()
    parser.add_argument("sequence", help="one-letter codes, e.g. A (alanine dipeptide when capped)")
    parser.add_argument("--termini", choices=TERMINI, default="capped")
    parser.add_argument(
        "--model", help="proposal-model file or bundled name (e.g. alanine-dipeptide)"
    )
    parser.add_argument(
        "--system",
        type=Path,
        metavar="SYSTEM_XML",
        help="your own System of the peptide that `timewarp build` writes (XmlSerializer, same "
        "atoms in the same order) for every sampler; the reference MD stays amber14-all + OBC2 "
        "(default: that force field for the samplers too)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="report folder")
    parser.add_argument(
        "--budget", type=float, default=defaults.budget_s, help="wall s per sampler"
    )
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument(
        "--starts",
        type=int,
        default=defaults.num_starts,
        help="chains per sampler, started from reference frames spread evenly",
    )
    add_reference_arguments(parser, defaults)
    parser.add_argument(
        "--parallel-tempering",
        type=Path,
        help="output folder of `timewarp reference run` (dipeptides): a second, "
        "equilibrium reference for basin and phi > 0 populations",
    )
    parser.add_argument(
        "--md-rates",
        type=Path,
        metavar="DIR",
        help="long MD runs of `timewarp md-rate` (same peptide, System, temperature, platform): "
        "MD's ESS per second is also taken from them where they are at least 20 integrated "
        "autocorrelation times long, with Timewarp's ratio to the fastest",
    )
    parser.add_argument("--tica-lag-ps", type=float, default=defaults.tica_lag_ps)
    parser.add_argument(
        "--timewarp-frame-interval",
        type=int,
        default=defaults.timewarp_frame_interval,
        help="MH iterations per recorded frame",
    )
    parser.add_argument("--md-frame-interval-ps", type=float, default=defaults.md_frame_interval_ps)
    parser.add_argument(
        "--exploration-threshold",
        type=float,
        default=defaults.exploration_threshold_kj_mol,
        help="kJ/mol",
    )
    parser.add_argument(
        "--max-proposal-batch",
        type=int,
        default=defaults.max_proposal_batch,
        help="default: the integrator's (1024 for independence models, else adaptive up to 64)",
    )
    parser.add_argument("--temperature", type=float, default=defaults.temperature_K, help="kelvin")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=defaults.torch_threads,
        help="threads for the proposal model (default 1, like the Reference platform)",
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="run a transferable model's proposal as an AOTInductor package compiled for this "
        "CPU (once per molecule, about a minute; several times faster per call)",
    )
    parser.add_argument("--platform", default=defaults.platform)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_benchmark_command)


def add_reference_arguments(parser: argparse.ArgumentParser, defaults: BenchmarkSettings) -> None:
    """``--reference``, ``--reference-ns`` and ``--cache``: the reference MD, given or generated."""
    parser.add_argument(
        "--reference", type=Path, help="a `timewarp simulate` folder to compare with"
    )
    parser.add_argument(
        "--reference-ns",
        type=float,
        default=defaults.reference_ns,
        help="length of the generated reference MD (when --reference is not given)",
    )
    parser.add_argument(
        "--cache", type=Path, default=Path("data/benchmark"), help="reference cache"
    )


def _benchmark_command(args: argparse.Namespace) -> int:
    settings = BenchmarkSettings(
        budget_s=args.budget,
        samplers=tuple(args.samplers),
        temperature_K=args.temperature,
        platform=args.platform,
        num_starts=args.starts,
        timewarp_frame_interval=args.timewarp_frame_interval,
        md_frame_interval_ps=args.md_frame_interval_ps,
        max_proposal_batch=args.max_proposal_batch,
        exploration_threshold_kj_mol=args.exploration_threshold,
        reference_ns=args.reference_ns,
        tica_lag_ps=args.tica_lag_ps,
        seed=args.seed,
        torch_threads=args.torch_threads,
        compiled=args.compiled,
    )
    run_benchmark(
        args.sequence,
        args.model,
        args.output,
        settings,
        termini=args.termini,
        reference_dir=args.reference,
        parallel_tempering_dir=args.parallel_tempering,
        cache_dir=args.cache,
        show_progress=not args.no_progress,
        system_file=args.system,
        md_rates_dir=args.md_rates,
    )
    print((args.output / "summary.md").read_text())
    return 0
