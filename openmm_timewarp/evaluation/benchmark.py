"""Timewarp against molecular dynamics, side by side, for the same wall-clock budget.

One process, one platform, one peptide; each sampler (:mod:`openmm_timewarp.evaluation.settings`)
runs for the same wall-clock budget, split evenly over its starts
(:mod:`openmm_timewarp.evaluation.runs`). The comparison is against a reference MD
(:mod:`openmm_timewarp.evaluation.md_reference`). Reported per sampler
(:mod:`openmm_timewarp.evaluation.analysis`): acceptance; ESS and ESS per second of TIC0 and of
every backbone dihedral with errors; time to discover each state; Jensen-Shannon divergences of the
Ramachandran and TIC histograms against the reference; the phi > 0 population. For every coordinate
the report names the fastest MD baseline (highest ESS per second) and Timewarp's ratio against it
(:mod:`openmm_timewarp.evaluation.comparisons`). The outputs are ``report.json``, ``summary.md``
(:mod:`openmm_timewarp.evaluation.report`) and PNG plots (:mod:`openmm_timewarp.evaluation.plots`)
in the output folder.
"""

from __future__ import annotations

import datetime
import json
import os
import platform as host
from dataclasses import asdict
from pathlib import Path

import openmm

from openmm_timewarp.data.peptides import (
    FORCEFIELD_NAME,
    TERMINI,
    build_peptide,
    create_system,
    read_system,
)
from openmm_timewarp.evaluation.analysis import analyse_chains, profile_timewarp, reference_summary
from openmm_timewarp.evaluation.comparisons import (
    compare_with_tempering,
    discovery_speedups,
    fastest_md_baselines,
    sampler_ratios,
)
from openmm_timewarp.evaluation.md_reference import (
    generate_reference,
    load_reference,
    starting_frames,
)
from openmm_timewarp.evaluation.plots import write_plots
from openmm_timewarp.evaluation.report import markdown_summary, model_summary, processor_name
from openmm_timewarp.evaluation.runs import run_chain
from openmm_timewarp.evaluation.settings import EXPLORATION, TIMEWARP, BenchmarkSettings
from openmm_timewarp.progress import progress_bar


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
    modeller = build_peptide(sequence, termini)
    topology = modeller.topology
    if system_file is None:
        system = create_system(topology)
    else:
        system = read_system(system_file, topology)

    if reference_dir is None:
        reference_dir = generate_reference(sequence, termini, cache_dir, settings)
    reference = load_reference(reference_dir, topology, settings)
    starts = starting_frames(reference, settings.num_starts)

    samplers: dict[str, dict] = {}
    plot_data: dict[str, dict] = {}
    budget_per_chain = settings.budget_s / len(starts)
    for index, name in enumerate(settings.samplers):
        with progress_bar(
            total=settings.budget_s,
            desc=name,
            unit="s",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s",
            enabled=show_progress,
        ) as progress:
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
        "machine": {
            "host": host.node(),
            "processor": processor_name(),
            "cpu_count": os.cpu_count(),
            "openmm": openmm.__version__,
            "platform": settings.platform,
        },
        "peptide": {
            "sequence": sequence,
            "termini": termini,
            "atoms": topology.getNumAtoms(),
            "system": FORCEFIELD_NAME if system_file is None else str(system_file),
        },
        "model": model_summary(model),
        "settings": asdict(settings),
        "reference": reference_summary(reference),
        "samplers": samplers,
        "ratios": sampler_ratios(samplers),
        "fastest_md": fastest_md_baselines(samplers),
        "discovery_speedups": discovery_speedups(samplers, settings),
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
