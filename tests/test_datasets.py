"""Frame and pair datasets: shapes, units, and a split by time without leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from openmm_timewarp.data.datasets import (
    list_trajectories,
    load_frames,
    load_pairs,
    load_topology,
    split_ranges,
)
from openmm_timewarp.data.md import RunSettings, TrajectoryRun

NUM_FRAMES = 100
FRAME_INTERVAL_PS = 0.01  # 20 steps of 0.5 fs keep the fixture to a second or two


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for index, start in enumerate([(-70.0, -40.0), (-150.0, 150.0)]):
        settings = RunSettings(
            "A",
            start=start,
            num_frames=NUM_FRAMES,
            frame_interval_steps=20,
            equilibration_ps=0.2,
            seed=index + 1,
        )
        TrajectoryRun(root / f"{index:02d}", settings).run(40, show_progress=False)
    return root


def frame_indices(data_dir: Path, tensor: torch.Tensor) -> list[tuple[int, int]]:
    """(trajectory, frame) of every row of ``tensor``, found by exact comparison."""
    frames = [t.load() for t in list_trajectories(data_dir)]
    found = []
    for row in tensor.numpy():
        hits = [
            (t, int(i))
            for t, xyz in enumerate(frames)
            for i in np.flatnonzero((xyz == row).all(axis=(1, 2)))
        ]
        assert len(hits) == 1
        found.append(hits[0])
    return found


def test_split_ranges_are_ordered_disjoint_and_gapped() -> None:
    for num_frames in range(0, 120, 7):
        for gap in (0, 1, 5, 13):
            train, validation, test = split_ranges(num_frames, gap).values()
            assert train == range(0, int(0.8 * num_frames))
            assert validation.stop == int(0.9 * num_frames) and test.stop == num_frames
            assert len(validation) == 0 or validation.start == train.stop + gap
            assert len(test) == 0 or test.start == validation.stop + gap
    assert split_ranges(100, 3) == {
        "train": range(0, 80),
        "validation": range(83, 90),
        "test": range(93, 100),
    }
    with pytest.raises(ValueError, match="fractions"):
        split_ranges(10, 0, (0.5, 0.5, 0.5))


def test_pairs_have_the_lag_and_do_not_leak_across_splits(data_dir: Path) -> None:
    tau_ps = 0.03  # 3 frames
    lag = 3
    used: dict[str, set[tuple[int, int]]] = {}
    for split in ("train", "validation", "test"):
        x_t, x_t_tau = load_pairs(data_dir, tau_ps, split)
        assert (
            x_t.dtype == torch.float32 and x_t.shape == x_t_tau.shape and x_t.shape[1:] == (22, 3)
        )
        starts, ends = frame_indices(data_dir, x_t), frame_indices(data_dir, x_t_tau)
        assert all(s[0] == e[0] and e[1] - s[1] == lag for s, e in zip(starts, ends, strict=True))
        used[split] = set(starts) | set(ends)
    assert not used["train"] & used["validation"]
    assert not used["train"] & used["test"]
    assert not used["validation"] & used["test"]
    # Frames of different splits are at least tau apart in time within each trajectory.
    for earlier, later in (("train", "validation"), ("validation", "test")):
        for trajectory in (0, 1):
            last = max(i for t, i in used[earlier] if t == trajectory)
            first = min(i for t, i in used[later] if t == trajectory)
            assert first - last > lag


def test_frames_cover_the_trajectories_in_nanometres(data_dir: Path) -> None:
    frames = {split: load_frames(data_dir, split) for split in ("train", "validation", "test")}
    assert sum(len(f) for f in frames.values()) == 2 * NUM_FRAMES
    assert len(frames["train"]) == 2 * int(0.8 * NUM_FRAMES)
    extent = frames["train"].amax(dim=1) - frames["train"].amin(dim=1)
    assert 0.3 < float(extent.max()) < 2.0  # nm, not angstrom
    assert load_topology(data_dir).getNumAtoms() == 22


def test_bad_requests_are_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown split"):
        load_frames(data_dir, "training")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number of frames"):
        load_pairs(data_dir, 0.015, "train")
    with pytest.raises(ValueError, match="shorter than tau"):
        load_pairs(data_dir, 0.2, "test")
    with pytest.raises(ValueError, match="No trajectories"):
        list_trajectories(tmp_path)
