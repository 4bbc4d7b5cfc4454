"""Timewarp against molecular dynamics, side by side, for the same wall-clock budget.

One process, one platform, one peptide; each sampler (:mod:`openmm_timewarp.evaluation.settings`)
runs for the same wall-clock budget, split evenly over its starts
(:mod:`openmm_timewarp.evaluation.runs`). The comparison is against a reference MD
(:mod:`openmm_timewarp.evaluation.md_reference`). Reported per sampler
(:mod:`openmm_timewarp.evaluation.analysis`): acceptance; ESS and ESS per second of TIC0 and of
every backbone dihedral with errors; time to discover each state; Jensen-Shannon divergences of the
Ramachandran and TIC histograms against the reference; the phi > 0 population. For every coordinate
the report names the fastest MD baseline (highest ESS per second) and Timewarp's ratio against it
(:mod:`openmm_timewarp.evaluation.comparisons`); with long MD runs (``md_rates_dir``), their
rates at the wall time per ns of the benchmark's own run of the same baseline
(:func:`~openmm_timewarp.evaluation.md_timing.timed_by_benchmark`). The outputs are
``report.json``, ``summary.md`` (:mod:`openmm_timewarp.evaluation.report`) and PNG plots
(:mod:`openmm_timewarp.evaluation.plots`) in the output folder.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict
from pathlib import Path

from openmm_timewarp.data.peptides import FORCEFIELD_NAME, TERMINI
from openmm_timewarp.evaluation import md_timing
from openmm_timewarp.evaluation.analysis import analyse_chains, profile_timewarp, reference_summary
from openmm_timewarp.evaluation.comparisons import (
    compare_with_tempering,
    discovery_speedups,
    fastest_md_baselines,
    sampler_ratios,
)
from openmm_timewarp.evaluation.md_rates import (
    MIN_AUTOCORRELATION_TIMES,
    fastest_long_runs,
    long_run_rates,
)
from openmm_timewarp.evaluation.md_reference import (
    load_reference,
    reference_folder,
    starting_frames,
)
from openmm_timewarp.evaluation.plots import write_plots
from openmm_timewarp.evaluation.report import machine_record, markdown_summary, model_summary
from openmm_timewarp.evaluation.runs import budget_progress, peptide_system, run_chain
from openmm_timewarp.evaluation.settings import EXPLORATION, TIMEWARP, BenchmarkSettings


def run_benchmark(
    sequence: str,
    model: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    settings: BenchmarkSettings | None = None,
    termini: str = "capped",
    reference_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = "data/benchmark",
    show_progress: bool = True,
    parallel_tempering_dir: str | os.PathLike | None = None,
    system_file: str | os.PathLike | None = None,
    md_rates_dir: str | os.PathLike | None = None,
) -> dict:
    """Run every sampler on the peptide for the same wall-clock budget and write the report.

    Args:
        sequence, termini: the peptide (built and parameterised by
            :mod:`openmm_timewarp.data.peptides`).
        model: proposal-model path or bundled name; needed when a Timewarp sampler is run.
        output_dir: receives ``report.json``, ``summary.md`` and the PNG plots.
        settings: the protocol; :class:`BenchmarkSettings` defaults when None.
        reference_dir: a ``timewarp simulate`` folder to compare against; when None, the reference
            MD is generated (data protocol, ``settings.reference_ns``) under ``cache_dir`` once and
            reused afterwards.
        parallel_tempering_dir: for a dipeptide, the output of
            :mod:`openmm_timewarp.evaluation.reference`;
            its 310 K state is then a second, equilibrium reference for the Ramachandran
            histogram, the basin populations and the phi > 0 population.
        system_file: a serialized System of the built peptide (same atoms, same order) that every
            sampler runs on instead of amber14-all + OBC2. The reference MD (TICA, states,
            histograms) stays that of ``reference_dir`` or the generated amber14 run, so the
            free-energy comparisons hold only for a System of that force field.
        md_rates_dir: long MD runs of the same peptide, System, temperature and platform
            (``timewarp md-rate``, :mod:`openmm_timewarp.evaluation.md_rates`); MD's ESS per
            second is then also taken from them, where they are long enough, with Timewarp's
            ratio to the fastest.

    Returns:
        The report (also written as ``report.json``).
    """
    settings = settings or BenchmarkSettings()
    if termini not in TERMINI:
        raise ValueError(f"unknown termini {termini!r}; use one of {TERMINI}")
    if model is None and ({TIMEWARP, EXPLORATION} & set(settings.samplers)):
        raise ValueError("a Timewarp sampler needs a model (a path or a bundled name)")
    import torch

    torch.set_num_threads(settings.torch_threads)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tempering = None
    if parallel_tempering_dir is not None:
        from openmm_timewarp.evaluation.reference import read_run

        tempering = read_run(parallel_tempering_dir)
    topology, system = peptide_system(sequence, termini, system_file)
    reference_dir = reference_folder(sequence, termini, settings, reference_dir, cache_dir)
    reference = load_reference(reference_dir, topology, settings)
    starts = starting_frames(reference, settings.num_starts)
    peptide = {
        "sequence": sequence,
        "termini": termini,
        "atoms": topology.getNumAtoms(),
        "system": FORCEFIELD_NAME if system_file is None else str(system_file),
    }
    long_runs = None
    if md_rates_dir is not None:  # read before the budget is spent: a mismatch is refused now
        expected = dict(peptide, temperature_K=settings.temperature_K, platform=settings.platform)
        long_runs = long_run_rates(md_rates_dir, expected, topology, reference)

    samplers: dict[str, dict] = {}
    plot_data: dict[str, dict] = {}
    budget_per_chain = settings.budget_s / len(starts)
    for index, name in enumerate(settings.samplers):
        with budget_progress(name, settings.budget_s, show_progress) as progress:
            chains = [
                run_chain(
                    name,
                    model,
                    system,
                    topology,
                    start,
                    budget_per_chain,
                    settings,
                    seed=settings.seed + 1000 * index + k,
                    progress=progress,
                )
                for k, start in enumerate(starts)
            ]
        samplers[name], plot_data[name] = analyse_chains(chains, topology, reference)
        if name in (TIMEWARP, EXPLORATION):
            samplers[name]["profile"] = profile_timewarp(samplers[name])

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_record(settings.platform),
        "peptide": peptide,
        "model": model_summary(model),
        "settings": asdict(settings),
        "reference": reference_summary(reference),
        "samplers": samplers,
        "ratios": sampler_ratios(samplers),
        "fastest_md": fastest_md_baselines(samplers),
        "discovery_speedups": discovery_speedups(samplers, settings),
    }
    if long_runs is not None:
        # At the speed of the benchmark's own run of the same baseline, where it ran one: the
        # long run took hours, over which this machine's speed drifts.
        long_runs = {
            name: md_timing.timed_by_benchmark(run, samplers.get(name))
            for name, run in long_runs.items()
        }
        report["md_rates"] = {
            "source": str(md_rates_dir),
            "min_autocorrelation_times": MIN_AUTOCORRELATION_TIMES,
            "runs": long_runs,
            "fastest": fastest_long_runs(long_runs, samplers.get(TIMEWARP, {}).get("ess")),
        }
    if tempering is not None:
        report["parallel_tempering"] = compare_with_tempering(
            tempering, str(parallel_tempering_dir), samplers, plot_data
        )
    report["files"] = write_plots(report, plot_data, reference, output_dir)
    text = json.dumps(report, indent=2) + "\n"
    (output_dir / "report.json").write_text(text)
    report = json.loads(text)  # what the file holds: plain JSON types
    (output_dir / "summary.md").write_text(markdown_summary(report))
    return report
