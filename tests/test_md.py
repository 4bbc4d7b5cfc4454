"""Resumable MD: interruption and resumption give the same frames, bad states are refused."""

from __future__ import annotations

import json
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from openmm_timewarp.data.dcd import count_dcd_frames
from openmm_timewarp.data.md import (
    PROGRESS_FILE,
    TOPOLOGY_FILE,
    TRAJECTORY_FILE,
    CheckpointError,
    RunSettings,
    TrajectoryRun,
    parse_start,
    run_many,
)

# Short frames (0.1 ps) and equilibration keep each run to about a second.
SETTINGS = RunSettings(
    "A",
    start=(-70.0, -40.0),
    num_frames=12,
    frame_interval_steps=200,
    equilibration_ps=0.5,
    seed=7,
)


def frames(directory: Path) -> np.ndarray:
    return mdtraj.load(str(directory / TRAJECTORY_FILE), top=str(directory / TOPOLOGY_FILE)).xyz


def test_interrupted_and_resumed_run_gives_the_same_frames(tmp_path: Path) -> None:
    TrajectoryRun(tmp_path / "whole", SETTINGS).run(4, show_progress=False)

    split = TrajectoryRun(tmp_path / "split", SETTINGS)
    assert split.run(4, stop_at_frames=4, show_progress=False) == 4
    # An interruption after frames were appended but before they were committed leaves a partial
    # frame and an orphaned checkpoint behind; both must be discarded on resume.
    with open(tmp_path / "split" / TRAJECTORY_FILE, "ab") as handle:
        handle.write(b"\0" * 700)
    (tmp_path / "split" / "checkpoint-000000008.chk").write_bytes(b"orphan")
    assert split.run(4, stop_at_frames=9, show_progress=False) == 9
    assert split.run(4, show_progress=False) == 12

    whole, resumed = frames(tmp_path / "whole"), frames(tmp_path / "split")
    assert whole.shape == resumed.shape == (12, 22, 3)
    np.testing.assert_array_equal(whole, resumed)
    assert sorted(p.name for p in (tmp_path / "split").glob("checkpoint-*")) == [
        "checkpoint-000000012.chk"
    ]
    assert split.run(4, show_progress=False) == 12  # a finished run stays as it is


def test_longer_run_extends_a_finished_one(tmp_path: Path) -> None:
    short = RunSettings(**{**SETTINGS.__dict__, "num_frames": 4})
    TrajectoryRun(tmp_path, short).run(2, show_progress=False)
    assert TrajectoryRun(tmp_path, SETTINGS).run(2, show_progress=False) == 12
    assert count_dcd_frames(tmp_path / TRAJECTORY_FILE, 22) == 12


def test_start_basin_is_reached(tmp_path: Path) -> None:
    settings = RunSettings(**{**SETTINGS.__dict__, "start": parse_start("alphaL"), "num_frames": 1})
    TrajectoryRun(tmp_path, settings).run(show_progress=False)
    trajectory = mdtraj.load(str(tmp_path / TRAJECTORY_FILE), top=str(tmp_path / TOPOLOGY_FILE))
    phi = np.degrees(mdtraj.compute_phi(trajectory)[1][0, 0])
    psi = np.degrees(mdtraj.compute_psi(trajectory)[1][0, 0])
    assert 20 < phi < 100 and -20 < psi < 100


def test_other_settings_are_refused_on_resume(tmp_path: Path) -> None:
    TrajectoryRun(tmp_path, RunSettings(**{**SETTINGS.__dict__, "num_frames": 2})).run(
        show_progress=False
    )
    other = RunSettings(**{**SETTINGS.__dict__, "seed": 8})
    with pytest.raises(ValueError, match="other settings"):
        TrajectoryRun(tmp_path, other).run(show_progress=False)


@pytest.mark.parametrize("damage", ["checkpoint", "progress", "topology"])
def test_corrupt_checkpoint_is_refused_and_nothing_is_lost(tmp_path: Path, damage: str) -> None:
    run = TrajectoryRun(tmp_path, RunSettings(**{**SETTINGS.__dict__, "num_frames": 4}))
    run.run(2, stop_at_frames=2, show_progress=False)
    trajectory = (tmp_path / TRAJECTORY_FILE).read_bytes()
    if damage == "checkpoint":
        checkpoint = tmp_path / json.loads((tmp_path / PROGRESS_FILE).read_text())["checkpoint"]
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
        match = "corrupt"
    elif damage == "progress":
        (tmp_path / PROGRESS_FILE).write_text("{not json")
        match = "unreadable"
    else:
        (tmp_path / TOPOLOGY_FILE).unlink()
        match = "lacks topology.pdb"
    with pytest.raises(CheckpointError, match=match):
        run.run(2, show_progress=False)
    assert (tmp_path / TRAJECTORY_FILE).read_bytes() == trajectory


def test_unwritable_output_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="Cannot write to the output folder"):
        TrajectoryRun(blocker / "run", SETTINGS).run(show_progress=False)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown residue"):
        RunSettings("AZ")
    with pytest.raises(ValueError, match="seed"):
        RunSettings("A", seed=0)
    with pytest.raises(ValueError, match="timestep_fs"):
        RunSettings("A", timestep_fs=0)
    with pytest.raises(ValueError, match="basin name"):
        parse_start("alphaX")
    assert parse_start("-60,-45") == (-60.0, -45.0)


def test_parallel_runs_match_sequential_ones(tmp_path: Path) -> None:
    settings = RunSettings(**{**SETTINGS.__dict__, "num_frames": 3})
    other = RunSettings(**{**settings.__dict__, "seed": 9, "start": (-150.0, 150.0)})
    runs = [(tmp_path / "a", settings), (tmp_path / "b", other)]
    results = run_many(runs, 2, checkpoint_interval_frames=2, round_frames=2, show_progress=False)
    assert [count for _, count in results] == [3, 3]
    TrajectoryRun(tmp_path / "b-alone", other).run(2, show_progress=False)
    np.testing.assert_array_equal(frames(tmp_path / "b"), frames(tmp_path / "b-alone"))
