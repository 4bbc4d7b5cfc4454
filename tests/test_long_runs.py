"""Long MD runs (:mod:`openmm_timewarp.evaluation.md_rates`) are saved segment by segment: an
interrupted run keeps its finished segments and continues from its last frame."""

import dataclasses
import json

import numpy as np
import pytest
from helpers import SHORT_REFERENCE

from openmm_timewarp.evaluation import md_rates
from openmm_timewarp.evaluation.settings import MD_PRACTICAL, BenchmarkSettings

#: 10 ps of reference MD at 50 fs per frame: a start frame in seconds.
SETTINGS = BenchmarkSettings(
    budget_s=0.9,
    samplers=(MD_PRACTICAL,),
    **SHORT_REFERENCE,
    md_frame_interval_ps=0.05,
)


def _saved(folder):
    record = json.loads((folder / md_rates.RUN_FILE).read_text())
    return record, np.load(folder / md_rates.FRAMES_FILE)


def test_a_run_is_saved_segment_by_segment(tmp_path, reference_dir):
    (record,) = md_rates.record_long_runs(
        "A", tmp_path, SETTINGS, reference_dir=reference_dir, show_progress=False,
        checkpoint_s=0.4,
    ).values()  # fmt: skip
    saved, frames = _saved(tmp_path / MD_PRACTICAL)
    assert saved == record
    # 0.4 + 0.4 s and the rest of 0.9: three segments, each with its own seed, summed.
    segments = record["segments"]
    assert [s["seed"] for s in segments] == [record["seed"] + 1000 * k for k in range(3)]
    assert segments[0]["wall_s"] >= 0.4 and segments[1]["wall_s"] >= 0.4
    assert record["wall_s"] >= SETTINGS.budget_s
    assert record["wall_s"] == pytest.approx(sum(s["wall_s"] for s in segments))
    assert record["simulated_ns"] == pytest.approx(sum(s["simulated_ns"] for s in segments))
    assert record["simulated_ns"] == pytest.approx(record["steps"] * 2e-6)
    assert frames.shape == (record["frames"], 22, 3)
    assert record["frame_interval_ps"] == pytest.approx(0.05)


def test_an_interrupted_run_keeps_its_segments_and_continues(tmp_path, reference_dir, monkeypatch):
    folder = tmp_path / MD_PRACTICAL
    run_segment = md_rates._run_segment
    calls = []

    def interrupted(*arguments, **keywords):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the session ends during the third segment
        return run_segment(*arguments, **keywords)

    monkeypatch.setattr(md_rates, "_run_segment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        md_rates.record_long_runs(
            "A", tmp_path, SETTINGS, reference_dir=reference_dir, show_progress=False,
            checkpoint_s=0.3,
        )  # fmt: skip
    monkeypatch.undo()
    kept, kept_frames = _saved(folder)
    assert len(kept["segments"]) == 2 and 0.6 <= kept["wall_s"] < SETTINGS.budget_s
    assert len(kept_frames) == kept["frames"]

    # The same request again (`timewarp md-rate` rerun) continues the run.
    (record,) = md_rates.record_long_runs(
        "A", tmp_path, SETTINGS, reference_dir=reference_dir, show_progress=False,
        checkpoint_s=0.3,
    ).values()  # fmt: skip
    saved, frames = _saved(folder)
    assert saved == record and record["wall_s"] >= SETTINGS.budget_s
    assert len(record["segments"]) == 3
    assert np.array_equal(frames[: kept["frames"]], kept_frames)
    # At its budget, nothing more runs.
    assert md_rates.extend_long_run(folder, SETTINGS.budget_s, SETTINGS) == record
    # Another request in the folder (another seed) replaces the run.
    other = dataclasses.replace(SETTINGS, seed=2)
    (fresh,) = md_rates.record_long_runs(
        "A", tmp_path, other, reference_dir=reference_dir, show_progress=False
    ).values()
    assert fresh["seed"] == record["seed"] + 1 and "segments" not in fresh
