"""Held-out evaluation: Timewarp against a long MD run, peptide by peptide, resumably.

For peptides drawn at random (with a printed seed) from a held-out list, each in
``OUTPUT/<SEQUENCE>-<termini>/``:

1. the reference MD (:mod:`openmm_timewarp.evaluation.md_reference`: a ``timewarp simulate``
   folder given per sequence, or the data-protocol run generated and cached) gives the TICA model,
   the states to find and, with MD's long run (step 2), the backbone-basin populations;
2. one MD baseline runs for ``md_budget_s`` exactly as ``timewarp md-rate`` runs it
   (:func:`~openmm_timewarp.evaluation.md_rates.record_long_runs`, in ``md/<baseline>/``, saved
   every 900 s of MD; an interrupted run, or a rerun with a larger ``md_budget_s``, continues it,
   :func:`~openmm_timewarp.evaluation.md_rates.extend_long_run`, and evaluates the peptide
   afresh); its rate per coordinate counts only where the run is 20 integrated autocorrelation
   times long with its window closed and visited every region of the coordinate that the
   reference populates (:func:`~openmm_timewarp.evaluation.md_rates.long_run_rates`,
   :func:`~openmm_timewarp.evaluation.analysis.mark_coverage`; Timewarp's likewise);
3. Timewarp (MH) with the model runs for ``timewarp_budget_s`` on the same platform from the same
   start (its frames kept in ``timewarp-frames.npz``), between two windows of the same MD of
   ``md_timing_s / 2`` each: MD's ESS per second is its long run's ESS per simulated ns over
   the wall time per ns of these windows (:mod:`~openmm_timewarp.evaluation.md_timing`), so MD
   and Timewarp are timed on the machine as it runs within minutes, not hours, of each other;
   then ``result.json`` is written (atomically, last): ESS/s ratios for MD's slowest
   backbone dihedral and TIC0 with errors, backbone-basin populations against the reference and
   MD's long run together (one set of chains), and the time both took to visit every state
   the reference visits (:mod:`openmm_timewarp.evaluation.heldout_table`); with
   ``exploration_budget_s``, also that of Timewarp in exploration mode (not exact: an energy
   threshold instead of MH), run after MH.

A peptide with ``result.json`` is read back (one written before MD was timed beside Timewarp is
evaluated afresh against its saved MD run); an interrupted one resumes at the first unfinished
step. ``request.json`` keeps what was asked (peptides, model, settings), and a
rerun that asks for something else is refused. ``table.md`` holds the finished peptides' table,
``speedups.png`` their ratios with error bars.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from openmm_timewarp.data.peptides import FORCEFIELD_NAME, TERMINI
from openmm_timewarp.evaluation import heldout_table, md_timing
from openmm_timewarp.evaluation.analysis import analyse_chains
from openmm_timewarp.evaluation.heldout_compare import compare
from openmm_timewarp.evaluation.md_rates import (
    FRAMES_FILE,
    RUN_FILE,
    extend_long_run,
    long_run_rates,
    record_long_runs,
)
from openmm_timewarp.evaluation.md_reference import (
    load_reference,
    reference_folder,
    starting_frames,
)
from openmm_timewarp.evaluation.plots import write_heldout_plot
from openmm_timewarp.evaluation.report import machine_record, model_summary
from openmm_timewarp.evaluation.runs import budget_progress, peptide_system, run_chain
from openmm_timewarp.evaluation.settings import (
    EXPLORATION,
    MD_PROTOCOLS,
    TIMEWARP,
    BenchmarkSettings,
)
from openmm_timewarp.files import write_atomically, write_json_atomically
from openmm_timewarp.optional import require

mdtraj = require("mdtraj")

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
#: Timewarp's chain: ``positions`` (nm, float32, [frames, atoms, 3]) and ``times_s``.
TIMEWARP_FRAMES_FILE = "timewarp-frames.npz"
TABLE_FILE = "table.md"
PLOT_FILE = "speedups.png"


@dataclass
class HeldoutSettings:
    """What each peptide runs: the benchmark's protocol plus the two budgets and the MD baseline."""

    md_budget_s: float = 1800.0
    timewarp_budget_s: float = 300.0
    md_baseline: str = "md-4fs-hmr"
    md_frame_interval_ps: float = 1.0
    #: Wall seconds of Timewarp in exploration mode (None: not run).
    exploration_budget_s: float | None = None
    #: Wall seconds of MD timed beside Timewarp, half right before it and half right after
    #: (:mod:`~openmm_timewarp.evaluation.md_timing`): MD's rate is its long run's ESS per ns
    #: over this wall time per ns, so both rates see the machine at the same speed.
    md_timing_s: float = 60.0
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)

    def __post_init__(self) -> None:
        if self.md_baseline not in MD_PROTOCOLS:
            raise ValueError(
                f"unknown MD baseline {self.md_baseline!r}; use one of {tuple(MD_PROTOCOLS)}"
            )
        for name in ("md_budget_s", "timewarp_budget_s", "md_frame_interval_ps", "md_timing_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.exploration_budget_s is not None and not self.exploration_budget_s > 0:
            raise ValueError(
                f"exploration_budget_s must be positive, got {self.exploration_budget_s}"
            )


def _request(peptides, termini, model, settings, references) -> dict:
    request = {
        "peptides": list(peptides),
        "termini": termini,
        "model": str(model),
        "settings": asdict(settings),
        "references": None if references is None else str(references),
    }
    return json.loads(json.dumps(request))  # as the file holds it: tuples become lists


def _check_request(output_dir: Path, request: dict) -> None:
    """Write ``request.json``, or refuse when the folder holds another request; a larger MD
    budget is the same request grown (its runs are extended, :func:`evaluate_peptide`)."""
    path = output_dir / REQUEST_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        grown = json.loads(json.dumps(previous))
        # A folder from before MD was timed beside Timewarp: its peptides are evaluated afresh.
        grown["settings"].setdefault("md_timing_s", request["settings"]["md_timing_s"])
        grown["settings"]["md_budget_s"] = max(
            previous["settings"]["md_budget_s"], request["settings"]["md_budget_s"]
        )
        if grown != request:
            changed = sorted(key for key in request if previous.get(key) != request[key])
            raise ValueError(
                f"{output_dir} holds an evaluation with other {', '.join(changed)}; resume it "
                "with the same arguments (a larger --md-budget extends its MD runs) or give "
                "another output folder (`timewarp heldout-table` puts several in one table)"
            )
        if grown == previous:
            return
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, request)


def saved_md_wall_s(run_file: Path) -> float:
    """The wall seconds of the saved MD run recorded in ``run_file`` (all its segments)."""
    return float(json.loads(run_file.read_text())["wall_s"])


def _md_run_file(folder: Path, settings: HeldoutSettings) -> Path:
    return folder / "md" / settings.md_baseline / RUN_FILE


def _md_short(md_wall_s: float | None, settings: HeldoutSettings) -> bool:
    """Whether a saved MD run is shorter than the budget (a rerun continues it)."""
    return md_wall_s is not None and md_wall_s < settings.md_budget_s


def _saved(folder: Path, settings: HeldoutSettings) -> tuple[float | None, dict | None]:
    """The saved MD run's wall seconds and the saved result, None where absent. A result is
    returned only while current: stale is one saved while the MD run was shorter than the
    budget, one of a shorter run than the saved one (a continuation interrupted before
    Timewarp reran), or one whose MD was not timed beside Timewarp (an earlier protocol)."""
    run_file = _md_run_file(folder, settings)
    md_wall_s = saved_md_wall_s(run_file) if run_file.is_file() else None
    result_file = folder / RESULT_FILE
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    if (
        result is None
        or _md_short(md_wall_s, settings)
        or result["md"]["wall_s"] != md_wall_s
        or "timing" not in result["md"]
    ):
        return md_wall_s, None
    return md_wall_s, result


def _plan(folder: Path, settings: HeldoutSettings) -> str:
    """What evaluating ``folder`` will do, for the progress log."""
    md_wall_s, result = _saved(folder, settings)
    if result is not None:
        return "read back"
    if _md_short(md_wall_s, settings):
        return (
            f"continuing its MD run from {md_wall_s:.0f} s to {settings.md_budget_s:.0f} s, "
            "then Timewarp afresh"
        )
    if (folder / RESULT_FILE).is_file():
        return "Timewarp afresh against its saved MD run, MD timed beside it"
    return "running"


def evaluate_peptide(
    sequence: str,
    termini: str,
    model: str | os.PathLike,
    folder: str | os.PathLike,
    settings: HeldoutSettings,
    reference_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = "data/benchmark",
    show_progress: bool = True,
) -> dict:
    """Evaluate one peptide in ``folder`` (or read back its finished result); see the module."""
    folder = Path(folder)
    bench = settings.benchmark
    run_file = _md_run_file(folder, settings)
    md_wall_s, result = _saved(folder, settings)
    if result is not None:
        return result
    md_settings = BenchmarkSettings(
        **dict(
            asdict(bench),
            budget_s=settings.md_budget_s,
            samplers=(settings.md_baseline,),
            md_frame_interval_ps=settings.md_frame_interval_ps,
        )
    )
    topology, system = peptide_system(sequence, termini)
    reference_dir = reference_folder(sequence, termini, bench, reference_dir, cache_dir)
    reference = load_reference(reference_dir, topology, bench)
    md_dir = folder / "md"
    if _md_short(md_wall_s, settings):  # a larger budget: continue the run, evaluate afresh
        extend_long_run(run_file.parent, settings.md_budget_s, md_settings, None, show_progress)
    elif not run_file.is_file():
        record_long_runs(
            sequence,
            md_dir,
            md_settings,
            termini,
            reference_dir,
            cache_dir,
            show_progress=show_progress,
        )
    peptide = {
        "sequence": sequence,
        "termini": termini,
        "atoms": topology.getNumAtoms(),
        "system": FORCEFIELD_NAME,
    }
    expected = dict(peptide, temperature_K=bench.temperature_K, platform=bench.platform)
    md_run = long_run_rates(md_dir, expected, topology, reference)[settings.md_baseline]

    import torch

    torch.set_num_threads(bench.torch_threads)
    start = starting_frames(reference, 1)[0]

    def time_md() -> dict:
        return md_timing.time_md(
            settings.md_baseline,
            system,
            topology,
            start,
            settings.md_timing_s / 2,
            md_settings,
            seed=bench.seed,
        )

    md_before = time_md()
    with budget_progress(
        f"{sequence} {TIMEWARP}", settings.timewarp_budget_s, show_progress
    ) as bar:
        chain = run_chain(
            TIMEWARP,
            model,
            system,
            topology,
            start,
            settings.timewarp_budget_s,
            bench,
            seed=bench.seed,
            progress=bar,
        )
    timing = md_timing.combined([md_before, time_md()])
    md = md_timing.at_wall_s_per_ns(md_run, timing["wall_s_per_ns"])
    timewarp, _ = analyse_chains([chain], topology, reference)
    # Kept, as MD's frames are, so the peptide can be analysed again without rerunning.
    frames = {"positions": chain.positions.astype(np.float32), "times_s": chain.times_s}
    write_atomically(folder / TIMEWARP_FRAMES_FILE, lambda handle: np.savez(handle, **frames))
    exploration = None
    if settings.exploration_budget_s is not None:
        budget = settings.exploration_budget_s
        with budget_progress(f"{sequence} {EXPLORATION}", budget, show_progress) as bar:
            exploration = run_chain(
                EXPLORATION,
                model,
                system,
                topology,
                start,
                budget,
                bench,
                seed=bench.seed + 1,
                progress=bar,
            )
    md_topology = mdtraj.Topology.from_openmm(topology)
    result = dict(
        peptide,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=machine_record(bench.platform),
        model=model_summary(model),
        reference=str(reference_dir),
        md={
            key: md_run[key]
            for key in (
                "baseline",
                "date",
                "wall_s",
                "simulated_ns",
                "wall_s_per_ns",
                "frames",
                "frame_interval_ps",
                "source",
            )
        }
        | {"timing": timing},
        timewarp={
            key: timewarp[key]
            for key in (
                "wall_s",
                "setup_s",
                "steps",
                "frames",
                "acceptance",
                "jsd_ramachandran",
                "stuck_chains",
            )
        },
        acceptance=timewarp["acceptance"],
        **compare(
            md,
            timewarp,
            reference,
            mdtraj.Trajectory(chain.positions, md_topology),
            chain.times_s,
            mdtraj.Trajectory(np.load(run_file.parent / FRAMES_FILE), md_topology),
            bench.min_state_population,
            exploration,
        ),
    )
    write_json_atomically(folder / RESULT_FILE, result)
    return result


def run_heldout(
    peptides: Sequence[str],
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: HeldoutSettings,
    termini: str = "zwitterionic",
    references: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = "data/benchmark",
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    jobs: int = 1,
) -> list[dict]:
    """Evaluate every peptide (each resumable) and write ``table.md``; returns the results.

    ``references``: a folder holding a ``timewarp simulate`` folder per sequence
    (``references/<SEQUENCE>``); None: each gets the data-protocol reference generated (and
    cached) under ``cache_dir``. ``jobs`` > 1 evaluates that many peptides at once, each in a
    process of its own that runs its MD and then its Timewarp, so both see the same load: give
    one job per free core (every process uses ``torch_threads`` threads). Progress bars are then
    off and a line is logged as each peptide finishes.
    """
    if termini not in TERMINI:
        raise ValueError(f"unknown termini {termini!r}; use one of {TERMINI}")
    if not peptides:
        raise ValueError("no peptides to evaluate")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    output_dir = Path(output_dir)
    if references is not None:
        missing = [s for s in peptides if not (Path(references) / s).is_dir()]
        if missing:
            raise ValueError(
                f"{references} has no reference for {' '.join(missing)} (a `timewarp simulate` "
                "folder per sequence, examples/heldout_evaluation.sh references)"
            )
    model_summary(model)  # a missing or malformed model is refused before any run
    _check_request(output_dir, _request(peptides, termini, model, settings, references))

    def arguments(sequence: str) -> tuple:
        reference_dir = None if references is None else Path(references) / sequence
        folder = output_dir / f"{sequence}-{termini}"
        return (sequence, termini, model, folder, settings, reference_dir, cache_dir)

    finished: dict[str, dict] = {}

    def record(sequence: str, result: dict) -> None:
        finished[sequence] = result
        ordered = [finished[s] for s in peptides if s in finished]
        write_atomically(output_dir / TABLE_FILE, heldout_table.table(ordered) + "\n")

    for number, sequence in enumerate(peptides, 1):
        plan = _plan(arguments(sequence)[3], settings)
        log(f"[{number}/{len(peptides)}] {sequence} ({termini}): {plan}")
        if jobs == 1:
            record(sequence, _named(sequence, termini, *arguments(sequence), show_progress))
    if jobs > 1:
        # spawn: a forked copy of a process that holds torch and OpenMM threads can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            running = {
                pool.submit(_named, sequence, termini, *arguments(sequence), False): sequence
                for sequence in peptides
            }
            for future in as_completed(running):
                try:
                    record(running[future], future.result())
                except RuntimeError:
                    pool.shutdown(wait=True, cancel_futures=True)  # the running ones finish
                    raise
                log(f"{running[future]} ({termini}): finished ({len(finished)}/{len(peptides)})")
    results = [finished[s] for s in peptides]
    write_heldout_plot(results, output_dir / PLOT_FILE)
    return results


def _named(sequence: str, termini: str, *arguments) -> dict:
    """:func:`evaluate_peptide`, its errors naming the peptide; the others' results are kept."""
    try:
        return evaluate_peptide(*arguments)
    except (ValueError, RuntimeError) as error:
        raise RuntimeError(f"{sequence} ({termini}): {error}") from error
