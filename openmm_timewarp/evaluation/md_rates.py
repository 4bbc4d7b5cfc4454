"""MD's ESS per second from runs long enough to close the autocorrelation window.

MD's integrated autocorrelation time of a slow coordinate grows with the length analysed until the
run covers the slow process many times over (docs/benchmarks.md): from a benchmark budget of a
minute, MD's ESS per second is several times too high, while Timewarp's chain decorrelates within
seconds. So MD's rate is taken from separate long runs:

- :func:`record_long_runs` (``timewarp md-rate``) runs each MD baseline once, exactly as the
  benchmark does (:func:`~openmm_timewarp.evaluation.runs.run_chain`: same System, integrator,
  start frame and frame recording), for a wall-clock budget, saved every ``CHECKPOINT_S``, and
  writes ``DIR/<baseline>/frames.npy`` (positions, nm, float32, ``[frames, atoms, 3]``) and
  ``DIR/<baseline>/run.json`` (wall time, simulated time, machine);
- :func:`extend_long_run` continues a run from its last frame to a larger budget (a slow
  coordinate that a run did not cover 20 times over needs more of the same run, not another);
- :func:`long_run_rates` (``timewarp benchmark --md-rates DIR``) gives, per baseline and coordinate,
  ESS per second = ESS of the run / its wall time, with ``long_enough`` true only where the run is
  at least ``MIN_AUTOCORRELATION_TIMES`` integrated autocorrelation times long (tau_int taken at
  the upper end of its error: :func:`mark_long_enough`) and Sokal's window closed, and
  ``covers_reference`` where the run visited every part of the coordinate's range that the
  reference runs populate (:func:`~openmm_timewarp.evaluation.analysis.mark_coverage`): a run
  that never left one basin closes its window on the motion within it; the benchmark and the
  held-out evaluation then put these rates at the wall time per ns of the same MD timed beside
  Timewarp (:mod:`~openmm_timewarp.evaluation.md_timing`), as the machine's speed drifts over
  the hours of a long run;
- :func:`fastest_long_runs` names, per coordinate, the fastest baseline among the long-enough runs
  that cover the reference, and Timewarp's ratio to it, with the relative errors of both rates
  added in quadrature.
"""

from __future__ import annotations

import datetime
import json
import os
import platform as host
from dataclasses import asdict
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app

from openmm_timewarp.data.peptides import FORCEFIELD_NAME, TERMINI
from openmm_timewarp.evaluation import metrics
from openmm_timewarp.evaluation.analysis import ess_records, mark_coverage
from openmm_timewarp.evaluation.comparisons import ess_ratio
from openmm_timewarp.evaluation.md_reference import (
    Reference,
    read_reference_trajectories,
    reference_folder,
)
from openmm_timewarp.evaluation.report import machine_record
from openmm_timewarp.evaluation.runs import budget_progress, peptide_system, run_chain
from openmm_timewarp.evaluation.settings import MD_PROTOCOLS, SAMPLERS, BenchmarkSettings
from openmm_timewarp.files import write_atomically, write_json_atomically
from openmm_timewarp.optional import require

mdtraj = require("mdtraj")

#: A run must be at least this many integrated autocorrelation times long for its rate to count.
MIN_AUTOCORRELATION_TIMES = 20.0
FRAMES_FILE = "frames.npy"
RUN_FILE = "run.json"
#: Wall seconds of MD between saves of a long run: an interruption loses at most this much.
CHECKPOINT_S = 900.0
#: What a long run must share with the benchmark that reads it.
_MATCHING = ("sequence", "termini", "atoms", "system", "temperature_K", "platform")


def record_long_runs(
    sequence: str,
    output_dir: str | os.PathLike,
    settings: BenchmarkSettings,
    termini: str = "capped",
    reference_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = "data/benchmark",
    system_file: str | os.PathLike | None = None,
    show_progress: bool = True,
    checkpoint_s: float = CHECKPOINT_S,
) -> dict[str, dict]:
    """Run each MD baseline in ``settings.samplers`` for ``settings.budget_s`` wall seconds.

    Each run starts from the benchmark's first start frame (of the reference in ``reference_dir``,
    or the one generated under ``cache_dir``) and records a frame every
    ``settings.md_frame_interval_ps``. The run is saved every ``checkpoint_s`` wall seconds (its
    first segment, then as :func:`extend_long_run` continues it). An existing run of a baseline
    is replaced (each is one timed measurement), except one of the same request that stopped
    short of its budget, interrupted: that one continues from its last frame.

    Returns:
        The run records by baseline (also written as ``run.json`` beside each run's frames).
    """
    if termini not in TERMINI:
        raise ValueError(f"unknown termini {termini!r}; use one of {TERMINI}")
    others = [name for name in settings.samplers if name not in MD_PROTOCOLS]
    if others:
        raise ValueError(
            f"long runs are for the MD baselines {tuple(MD_PROTOCOLS)} only, not {others}"
        )
    topology, system = peptide_system(sequence, termini, system_file)
    reference_dir = reference_folder(sequence, termini, settings, reference_dir, cache_dir)
    # The benchmark's first start: the first frame of the reference.
    trajectories, _ = read_reference_trajectories(reference_dir, topology)
    start = trajectories[0].xyz[0].astype(np.float64)
    records = {}
    for name in settings.samplers:
        folder = Path(output_dir) / name
        request = {
            "baseline": name,
            "sequence": sequence,
            "termini": termini,
            "atoms": topology.getNumAtoms(),
            "system": FORCEFIELD_NAME if system_file is None else str(system_file),
            "temperature_K": settings.temperature_K,
            "platform": settings.platform,
            "seed": settings.seed + SAMPLERS.index(name),
            "reference": str(reference_dir),
            "budget_s": settings.budget_s,
        }
        if _interrupted(folder, request):
            records[name] = extend_long_run(
                folder, settings.budget_s, settings, system_file, show_progress, checkpoint_s
            )
            continue
        with budget_progress(name, settings.budget_s, show_progress) as progress:
            chain = run_chain(
                name,
                None,
                system,
                topology,
                start,
                min(settings.budget_s, checkpoint_s),
                settings,
                seed=request["seed"],
                progress=progress,
            )
            simulated_ns = chain.counters["simulated_ps"] / 1000.0
            record = dict(
                request,
                machine=machine_record(settings.platform),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                wall_s=chain.wall_s,
                setup_s=chain.setup_s,
                steps=chain.steps,
                simulated_ns=simulated_ns,
                wall_s_per_ns=chain.wall_s / simulated_ns,
                # Thinning keeps the spacing uniform at the final stride.
                frame_interval_ps=chain.stride * MD_PROTOCOLS[name].timestep_fs / 1000.0,
                frames=len(chain.positions),
            )
            folder.mkdir(parents=True, exist_ok=True)
            positions = chain.positions.astype(np.float32)
            write_atomically(folder / FRAMES_FILE, lambda handle, p=positions: np.save(handle, p))
            write_json_atomically(folder / RUN_FILE, record)  # written last: the segment is done
            records[name] = _continue(
                folder,
                record,
                positions,
                settings.budget_s,
                settings,
                (topology, system),
                progress,
                checkpoint_s,
            )
    return records


def _interrupted(folder: Path, request: dict) -> bool:
    """Whether ``folder`` holds a run of ``request`` (the same peptide, System, baseline, seed,
    reference and budget) that stopped short of its budget."""
    try:
        record = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):  # none, or unreadable: the run is made afresh
        return False
    same = all(record.get(key) == value for key, value in request.items())
    return same and record["wall_s"] < request["budget_s"]


def _segment(record: dict) -> dict:
    return {key: record[key] for key in ("date", "machine", "seed", "wall_s", "simulated_ns")}


def extend_long_run(
    folder: str | os.PathLike,
    budget_s: float,
    settings: BenchmarkSettings,
    system_file: str | os.PathLike | None = None,
    show_progress: bool = True,
    checkpoint_s: float = CHECKPOINT_S,
) -> dict:
    """Continue the long run in ``folder`` (written by :func:`record_long_runs`) from its last
    frame until its wall time reaches ``budget_s``; returns its record (unchanged when it is
    already that long).

    The continuation runs in segments of at most ``checkpoint_s`` wall seconds, each saved when
    done, so an interrupted one loses at most the segment under way and a rerun with the same
    budget continues. Each segment draws new velocities at the run's temperature (the run keeps
    no velocities); the baselines' Langevin friction forgets velocities within picoseconds, far
    below the autocorrelation times the extension is for. Frames keep the run's spacing
    (``settings.max_frames`` thins the first segment only). The record keeps each segment (date,
    machine, seed, wall time, simulated time) and sums them; frames are written before the
    record, and frames beyond the record's count (a segment interrupted between the two writes)
    are dropped when read.
    """
    folder = Path(folder)
    record = json.loads((folder / RUN_FILE).read_text())
    remaining = budget_s - record["wall_s"]
    if remaining <= 0:
        return record
    expected = {key: record[key] for key in _MATCHING}
    record, positions = read_long_run(folder, expected)
    peptide = peptide_system(record["sequence"], record["termini"], system_file)
    with budget_progress(f"{record['baseline']} (extension)", remaining, show_progress) as bar:
        return _continue(folder, record, positions, budget_s, settings, peptide, bar, checkpoint_s)


def _continue(
    folder: Path,
    record: dict,
    positions: np.ndarray,
    budget_s: float,
    settings: BenchmarkSettings,
    peptide: tuple[app.Topology, openmm.System],
    progress,
    checkpoint_s: float,
) -> dict:
    """Run segments of at most ``checkpoint_s`` seconds, each saved, until the run's wall time
    reaches ``budget_s`` (recorded as the run's budget)."""
    record = dict(record, budget_s=budget_s)
    while record["wall_s"] < budget_s:
        wall_s = min(budget_s - record["wall_s"], checkpoint_s)
        record, positions = _run_segment(
            folder, record, positions, wall_s, settings, peptide, progress
        )
    return record


def _run_segment(
    folder: Path,
    record: dict,
    positions: np.ndarray,
    wall_s: float,
    settings: BenchmarkSettings,
    peptide: tuple[app.Topology, openmm.System],
    progress,
) -> tuple[dict, np.ndarray]:
    """Run one more segment of ``wall_s`` seconds from the run's last frame and save the run."""
    topology, system = peptide
    segments = record.get("segments", [_segment(record)])
    seed = record["seed"] + 1000 * len(segments)
    run_settings = BenchmarkSettings(
        **dict(
            asdict(settings),
            temperature_K=record["temperature_K"],
            platform=record["platform"],
            md_frame_interval_ps=record["frame_interval_ps"],
            # No thinning: the new frames keep the run's spacing, so a segment interrupted between
            # writing the frames and the record leaves the saved frames a prefix of the file.
            max_frames=10**9,
        )
    )
    chain = run_chain(
        record["baseline"], None, system, topology, positions[-1].astype(np.float64), wall_s,
        run_settings, seed=seed, progress=progress,
    )  # fmt: skip
    simulated_ns = chain.counters["simulated_ps"] / 1000.0
    segment = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_record(record["platform"]),
        "seed": seed,
        "wall_s": chain.wall_s,
        "simulated_ns": simulated_ns,
    }
    frames = np.concatenate([positions, chain.positions.astype(np.float32)])
    record = dict(
        record,
        date=segment["date"],
        wall_s=record["wall_s"] + chain.wall_s,
        steps=record["steps"] + chain.steps,
        simulated_ns=record["simulated_ns"] + simulated_ns,
        frames=len(frames),
        segments=[*segments, segment],
    )
    record["wall_s_per_ns"] = record["wall_s"] / record["simulated_ns"]
    write_atomically(folder / FRAMES_FILE, lambda handle: np.save(handle, frames))
    write_json_atomically(folder / RUN_FILE, record)
    return record, frames


def read_long_run(folder: str | os.PathLike, expected: dict) -> tuple[dict, np.ndarray]:
    """A run's record and frames; refused unless it matches ``expected`` on every key of
    ``_MATCHING`` (the benchmark's peptide, System, temperature and platform)."""
    folder = Path(folder)
    record = json.loads((folder / RUN_FILE).read_text())
    if record.get("baseline") not in MD_PROTOCOLS or record["baseline"] != folder.name:
        raise ValueError(
            f"{folder} holds a run of {record.get('baseline')!r}; a folder of long MD runs holds "
            f"one run per MD baseline, named after it ({', '.join(MD_PROTOCOLS)})"
        )
    for key in _MATCHING:
        if record.get(key) != expected[key]:
            raise ValueError(
                f"the long MD run {folder} has {key} {record.get(key)!r}, the benchmark "
                f"{expected[key]!r}; record the runs with the benchmark's settings"
            )
    positions = np.load(folder / FRAMES_FILE)
    if positions.shape[0] > record["frames"]:  # an extension interrupted before its record
        positions = positions[: record["frames"]]
    if positions.shape != (record["frames"], record["atoms"], 3):
        raise ValueError(
            f"{folder / FRAMES_FILE} holds an array of shape {positions.shape}, the record "
            f"{(record['frames'], record['atoms'], 3)}"
        )
    return record, positions


def mark_long_enough(rate: dict, frame_interval_ps: float) -> dict:
    """Add to an ESS record of one run (:func:`~openmm_timewarp.evaluation.analysis.ess_records`)
    ``tau_int_ps``, the run's length in integrated autocorrelation times and ``long_enough``.

    A short run underestimates its own tau_int (its window closes on noise), so the length is
    counted in units of tau_int plus its Sokal error: ``autocorrelation_times`` =
    frames / (tau_int + error). On AR(1) series of known tau_int that rejects 9 in 10 runs
    of 8 true tau_int (36 of 40 seeds), while the point estimate alone accepts about half (21).
    """
    rate["tau_int_ps"] = rate["tau_int"] * frame_interval_ps
    rate["autocorrelation_times"] = rate["num_samples"] / (rate["tau_int"] + rate["tau_int_error"])
    rate["long_enough"] = bool(
        rate["window_closed"] and rate["autocorrelation_times"] >= MIN_AUTOCORRELATION_TIMES
    )
    return rate


def _run_coordinates(
    trajectory: mdtraj.Trajectory, reference: Reference
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """One run's backbone dihedrals and TICs (the reference's TICA), as ``ess_records`` and
    ``mark_coverage`` take them."""
    return (
        [metrics.backbone_dihedrals(trajectory)],
        [reference.tica.transform(metrics.dihedral_features(trajectory))],
    )


def long_run_rates(
    md_rates_dir: str | os.PathLike,
    expected: dict,
    topology: app.Topology,
    reference: Reference,
) -> dict[str, dict]:
    """Per baseline found in ``md_rates_dir``: its run record and, in ``ess``, per coordinate
    (``tic0`` of the reference's TICA, ``phi0``, ``psi0``, ...) the ESS per second of the whole
    run, its integrated autocorrelation time in ps, the run's length in those times,
    ``long_enough`` and ``covers_reference``."""
    folders = sorted(path for path in Path(md_rates_dir).glob(f"*/{RUN_FILE}"))
    if not folders:
        raise ValueError(
            f"no long MD runs in {md_rates_dir} (no */{RUN_FILE}); record them with "
            "`timewarp md-rate`"
        )
    md_topology = mdtraj.Topology.from_openmm(topology)
    runs = {}
    for path in folders:
        record, positions = read_long_run(path.parent, expected)
        angles, tics = _run_coordinates(mdtraj.Trajectory(positions, md_topology), reference)
        ess = mark_coverage(ess_records(angles, tics, record["wall_s"]), angles, tics, reference)
        for rate in ess.values():
            mark_long_enough(rate, record["frame_interval_ps"])
        runs[record["baseline"]] = dict(
            record, source=str(path.parent), same_host=record["machine"]["host"] == host.node()
        )
        runs[record["baseline"]]["ess"] = ess
    return runs


def fastest_long_runs(runs: dict[str, dict], timewarp_ess: dict | None = None) -> dict[str, dict]:
    """Per coordinate, the long-enough run with the highest ESS per second, and Timewarp's ratio.

    Each record holds ``baseline`` (None, with a ``note``, where no run is long enough), its ESS/s
    with error, ``tau_int_ps`` and ``autocorrelation_times``; with ``timewarp_ess`` (the
    benchmark's Timewarp ESS records) also ``ratio`` and ``error`` as in
    :func:`~openmm_timewarp.evaluation.comparisons.ess_ratio`.
    """
    keys = next(iter(runs.values()))["ess"] if runs else {}
    fastest = {}
    for key in keys:
        usable = [
            name
            for name in runs
            if runs[name]["ess"][key]["long_enough"] and runs[name]["ess"][key]["covers_reference"]
        ]
        if not usable:
            longest = max(runs, key=lambda name: runs[name]["ess"][key]["autocorrelation_times"])
            fastest[key] = {
                "baseline": None,
                "note": f"no run is {MIN_AUTOCORRELATION_TIMES:g} integrated autocorrelation "
                "times long with its window closed and visits every region the reference "
                f"populates (longest: {longest}, "
                f"{runs[longest]['ess'][key]['autocorrelation_times']:.3g}, missing "
                f"{runs[longest]['ess'][key]['missed_reference_mass']:.1%} of the reference); "
                "no rate",
            }
            continue
        name = max(usable, key=lambda baseline: runs[baseline]["ess"][key]["ess_per_s"])
        md = runs[name]["ess"][key]
        record = {
            "baseline": name,
            "ess_per_s": md["ess_per_s"],
            "ess_per_s_error": md["ess_per_s_error"],
            "tau_int_ps": md["tau_int_ps"],
            "autocorrelation_times": md["autocorrelation_times"],
        }
        if timewarp_ess and key in timewarp_ess and timewarp_ess[key]["ess_per_s"] > 0:
            record.update(ess_ratio(timewarp_ess[key], md))
        fastest[key] = record
    return fastest
