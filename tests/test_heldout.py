"""Tests of the held-out evaluation: its arithmetic against hand-computed values, the random draw,
and a short resumable run on capped alanine."""

import dataclasses
import json
import math

import mdtraj
import numpy as np
import openmm.unit as unit
import pytest
import torch
from helpers import SHORT_REFERENCE

from openmm_timewarp import cli
from openmm_timewarp.data.peptides import build_peptide
from openmm_timewarp.evaluation import (
    heldout,
    heldout_basins,
    heldout_draw,
    heldout_table,
    md_rates,
    metrics,
)
from openmm_timewarp.evaluation.settings import MD_PRACTICAL, BenchmarkSettings

torch.set_num_threads(1)

#: A reference and budgets small enough for seconds: 10 ps of reference MD, 50 fs per frame.
FAST = dict(
    **SHORT_REFERENCE,
    tica_lag_ps=0.25,
)


def _degrees(*values: float) -> np.ndarray:
    return np.radians(np.array(values, dtype=float))


def test_basins_per_residue_include_phi_positive_and_one_angle_termini():
    labels, names = heldout_table.basin_labels(
        _degrees(-60, 60, 60, -150), _degrees(-45, 45, 180, 150)
    )
    assert [names[i] for i in labels] == ["alphaR", "alphaL", "C7ax", "beta"]
    labels, names = heldout_table.basin_labels(_degrees(-60, 60, 150), None)
    assert [names[i] for i in labels] == ["phi-", "phi+", "phi-"]
    labels, names = heldout_table.basin_labels(None, _degrees(-45, 150))
    assert [names[i] for i in labels] == ["alpha", "beta"]
    with pytest.raises(ValueError, match="phi or psi"):
        heldout_table.basin_labels(None, None)
    states = heldout_table.combined_states(
        [np.array([0, 1]), np.array([1, 1])], [("beta", "alpha"), ("phi-", "phi+")]
    )
    assert states == ["beta/phi+", "alpha/phi+"]


@pytest.mark.parametrize(
    ("sequence", "termini", "expected"),
    [
        ("A", "capped", {"ALA2": metrics.RAMACHANDRAN_STATES}),
        (
            "ACDE",
            "zwitterionic",
            {
                "ALA1": heldout_table.PSI_ONLY_BASINS,
                "CYS2": metrics.RAMACHANDRAN_STATES,
                "ASP3": metrics.RAMACHANDRAN_STATES,
                "GLU4": heldout_table.PHI_ONLY_BASINS,
            },
        ),
    ],
)
def test_every_residue_with_a_backbone_dihedral_has_its_basins(sequence, termini, expected):
    pdb = build_peptide(sequence, termini)
    positions = np.repeat(np.array(pdb.positions.value_in_unit(unit.nanometer))[None], 3, axis=0)
    trajectory = mdtraj.Trajectory(positions, mdtraj.Topology.from_openmm(pdb.topology))
    residues = heldout_basins.residue_basins(trajectory)
    assert {name: basins for name, _, _, basins in residues} == expected
    (states,), populations = heldout_basins.states_and_basins([trajectory])
    assert len(states) == 3 and states[0].count("/") == len(expected) - 1
    assert set(populations) == {f"{r}:{b}" for r, basins in expected.items() for b in basins}


def test_reference_basins_pool_at_the_coarser_frame_interval():
    pdb = build_peptide("A", "capped")
    topology = mdtraj.Topology.from_openmm(pdb.topology)
    built = np.array(pdb.positions.value_in_unit(unit.nanometer))
    helical = build_peptide("A", "capped", phi=-60.0, psi=-45.0).positions
    other = np.array(helical.value_in_unit(unit.nanometer))
    alternating = mdtraj.Trajectory(np.stack([built, other] * 4), topology)
    constant = mdtraj.Trajectory(np.repeat(built[None], 4, axis=0), topology)
    ((name, _, labels, basins),) = heldout_basins.residue_basins(constant)
    basin = f"{name}:{basins[labels[0]]}"
    # Every second frame of the finer run is the extended one: thinned, its basin holds all.
    fine_md = heldout_basins.reference_basins([constant], 1.0, alternating, 0.5)
    fine_references = heldout_basins.reference_basins([alternating], 1.0, constant, 2.0)
    assert fine_md[basin]["population"] == fine_references[basin]["population"] == 1.0
    unthinned = heldout_basins.reference_basins([alternating], 1.0, constant, 1.0)
    assert unthinned[basin]["population"] == pytest.approx(8 / 12)
    with pytest.raises(ValueError, match="cannot be thinned"):
        heldout_basins.reference_basins([constant], 1.0, alternating, 0.3)
    with pytest.raises(ValueError, match="cannot be thinned"):
        heldout_basins.reference_basins([constant], 1.0, alternating, 1.5)


def _ess(value: float, error: float, closed: bool = True) -> dict:
    return {"ess_per_s": value, "ess_per_s_error": error, "window_closed": closed}


def _md(value: float, error: float, long_enough: bool = True) -> dict:
    return dict(
        _ess(value, error),
        tau_int_ps=3.0,
        autocorrelation_times=40.0 if long_enough else 5.0,
        long_enough=long_enough,
    )


def test_rate_ratio_propagates_both_errors_and_uses_only_long_enough_md():
    record = heldout_table.rate_ratio(_ess(10.0, 1.0), _md(2.0, 0.2))
    assert record["ratio"] == pytest.approx(5.0)
    assert record["error"] == pytest.approx(5.0 * math.sqrt(0.1**2 + 0.1**2))
    assert record["trusted"]
    # Controls: MD too short, or Timewarp's window open, and the ratio is not used.
    assert not heldout_table.rate_ratio(_ess(10.0, 1.0), _md(2.0, 0.2, False))["trusted"]
    assert not heldout_table.rate_ratio(_ess(10.0, 1.0, False), _md(2.0, 0.2))["trusted"]
    empty = heldout_table.rate_ratio(_ess(0.0, 0.0), _md(2.0, 0.2))
    assert empty["ratio"] is None and not empty["trusted"]


def test_a_run_that_never_visited_a_populated_region_is_not_trusted():
    # The reference spends 30% in a second basin; a run confined to the first misses it, a run
    # that visited it once covers it, and a region holding under 1% may be missed.
    edges = np.linspace(-math.pi, math.pi, metrics.COVERAGE_BINS + 1)
    reference = np.concatenate([np.full(70, -2.0), np.full(29, 1.5), [3.0]])
    confined = np.random.default_rng(0).normal(-2.0, 0.1, 1000)
    assert metrics.missed_mass(confined, reference, edges) == pytest.approx(0.30)
    assert metrics.missed_mass(np.append(confined, 1.5), reference, edges) == pytest.approx(0.01)
    assert metrics.missed_mass(np.append(confined, 1.5), reference, edges) < 0.0101
    # Either run failing to cover the reference leaves the ratio out, marked in the table.
    ratios = {}
    for name, md_covers, timewarp_covers in (
        ("both", True, True),
        ("md", False, True),
        ("timewarp", True, False),
        ("unchecked", True, None),
    ):
        md = dict(_md(2.0, 0.2), covers_reference=md_covers, missed_reference_mass=0.0)
        timewarp = dict(_ess(10.0, 1.0), covers_reference=timewarp_covers)
        ratios[name] = heldout_table.rate_ratio(timewarp, md)
    assert ratios["both"]["trusted"] and ratios["unchecked"]["trusted"]
    assert not ratios["md"]["trusted"] and not ratios["timewarp"]["trusted"]
    assert heldout_table._ratio_text(ratios["md"]).endswith("§")
    assert heldout_table._ratio_text(ratios["timewarp"]).endswith("¶")


def test_exploration_ratio_is_censored_where_one_sampler_never_found_every_state():
    assert heldout_table.exploration_ratio(2.0, 100.0, 50.0, 1000.0, 4) == {
        "ratio": 25.0,
        "bound": None,
    }
    assert heldout_table.exploration_ratio(2.0, 100.0, None, 1000.0, 4) == {
        "ratio": 500.0,
        "bound": "lower",
    }
    assert heldout_table.exploration_ratio(None, 100.0, 50.0, 1000.0, 4) == {
        "ratio": 0.5,
        "bound": "upper",
    }
    assert heldout_table.exploration_ratio(None, 100.0, None, 1000.0, 4)["ratio"] is None
    # One state, the one both start in: nothing to explore.
    assert heldout_table.exploration_ratio(2.0, 100.0, 50.0, 1000.0, 1)["ratio"] is None


def test_population_errors_and_two_sigma_test():
    # A basin never visited in 100 effective samples (the residue's dihedrals): not exactly empty.
    never = heldout_table.population([np.zeros(1000, dtype=bool)], fallback_ess=100.0)
    assert never["population"] == 0
    assert never["error"] == pytest.approx(math.sqrt(0.01 * 0.99 / 100))
    # Control: 3% in a sampler against that reference is more than 2 sigma away.
    found = heldout_table.population_deviation({"population": 0.03, "error": 0.005}, never)
    assert found["sigma"] == pytest.approx(0.03 / math.hypot(0.005, never["error"]))
    assert not found["within_2_sigma"]
    half = heldout_table.population([np.arange(100) % 2 == 0])
    assert half["population"] == 0.5
    assert half["error"] == pytest.approx(math.sqrt(0.25 / half["ess"]))
    reference = {"population": 0.4, "error": 0.04}
    inside = heldout_table.population_deviation({"population": 0.5, "error": 0.03}, reference)
    assert inside["sigma"] == pytest.approx(2.0) and inside["within_2_sigma"]
    outside = heldout_table.population_deviation({"population": 0.51, "error": 0.03}, reference)
    assert outside["sigma"] == pytest.approx(2.2) and not outside["within_2_sigma"]


def test_draw_is_reproducible_and_refuses_bad_input():
    held_out = heldout_draw.held_out_sequences("dipeptides")
    assert len(held_out) == 200
    first = heldout_draw.draw_peptides(held_out, 16, seed=3)
    assert first == heldout_draw.draw_peptides(held_out, 16, seed=3)
    assert len(set(first)) == 16 and set(first) <= set(held_out)
    assert first != heldout_draw.draw_peptides(held_out, 16, seed=4)
    with pytest.raises(ValueError, match="count must be between 1 and 200"):
        heldout_draw.draw_peptides(held_out, 201, seed=3)
    # Skipping continues the same draw: the earlier table's peptides never come back.
    assert (
        heldout_draw.draw_peptides(held_out, 8, seed=3, skip=16)
        == heldout_draw.draw_peptides(held_out, 24, seed=3)[16:]
    )
    with pytest.raises(ValueError, match="between 1 and 8 after skipping 192, got 9"):
        heldout_draw.draw_peptides(held_out, 9, seed=3, skip=192)
    with pytest.raises(ValueError, match="skip must be >= 0"):
        heldout_draw.draw_peptides(held_out, 1, seed=3, skip=-1)
    with pytest.raises(ValueError, match="unknown held-out list"):
        heldout_draw.held_out_sequences("nonapeptides")
    with pytest.raises(ValueError, match="unknown MD baseline"):
        heldout.HeldoutSettings(md_baseline="md-10fs")


def _result(sequence: str, ratio: float, md_long_enough: bool) -> dict:
    rate = heldout_table.rate_ratio(_ess(ratio, 0.1 * ratio), _md(1.0, 0.1, md_long_enough))
    basin = heldout_table.population_deviation(
        {"population": 0.5, "error": 0.1}, {"population": 0.5, "error": 0.1}
    )
    return {
        "sequence": sequence,
        "termini": "zwitterionic",
        "atoms": 30,
        "md": {"timing": {"wall_s_per_ns": 100.0}},
        "acceptance": 0.2,
        "slowest_dihedral": "psi0",
        "ratios": {"slowest_dihedral": rate, "tic0": rate},
        "basins": {"ALA1:beta": basin},
        "states": ["beta/phi-", "alpha/phi-"],
        "exploration": {
            "times_s": [1.0, None],
            "ratio": heldout_table.exploration_ratio(1.0, 10.0, None, ratio, 2),
        },
        "exploration_mode": None,
    }


def test_table_medians_leave_out_untrusted_md_rates():
    text = heldout_table.table(
        [_result("AA", 2.0, True), _result("CC", 4.0, True), _result("DD", 100.0, False)]
    )
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 5  # header, three peptides, medians
    assert "(100 ± 14x)†" in rows[3]
    medians = rows[4]
    assert "3 (2.5-3.5; 2-4; n=2)" in medians  # DD's ratio is not in the median
    # Every basin counts, beside what an exact sampler would give (95.4% within 2 sigma).
    assert "3 of 3 peptides all within; 3 of 3 basins (exact: 2.86)" in medians
    assert "(>= 2x) (2 states) | not run |" in rows[1]
    # A result from before MD was timed beside Timewarp is marked.
    assert rows[1].startswith("| AA (zwitterionic) |")
    untimed = dict(_result("EE", 2.0, True), md={})
    assert "| EE (zwitterionic)◊ |" in heldout_table.table([untimed])
    with pytest.raises(ValueError, match="exploration_budget_s must be positive"):
        heldout.HeldoutSettings(exploration_budget_s=0.0)


def _merge_folder(folder, peptides, model="peptides", **results) -> None:
    """A ``timewarp heldout`` folder: a request and, per peptide, (ratio, MD wall s, run's)."""
    settings = {
        "md_budget_s": 600.0,
        "md_baseline": "md-4fs-hmr",
        "timewarp_budget_s": 30.0,
        "md_timing_s": 60.0,
    }
    request = {"peptides": peptides, "termini": "zwitterionic", "model": model}
    folder.mkdir()
    (folder / heldout.REQUEST_FILE).write_text(json.dumps(dict(request, settings=settings)))
    for sequence, (ratio, wall_s, run_wall_s) in results.items():
        run = folder / f"{sequence}-zwitterionic" / "md" / "md-4fs-hmr"
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"wall_s": run_wall_s}))
        result = dict(_result(sequence, ratio, True), md={"wall_s": wall_s})
        (run.parent.parent / heldout.RESULT_FILE).write_text(json.dumps(result))


def test_heldout_table_takes_each_peptide_from_its_longest_finished_md_run(tmp_path, capsys):
    first, longer, unfinished = tmp_path / "first", tmp_path / "longer", tmp_path / "unfinished"
    _merge_folder(first, ["AA", "CC"], AA=(2.0, 600.0, 600.0), CC=(3.0, 600.0, 600.0))
    _merge_folder(longer, ["CC"], CC=(7.0, 1200.0, 1200.0))
    # AA's MD run continued to 1200 s there, its rerun unfinished: the old result is not read.
    _merge_folder(unfinished, ["AA"], AA=(50.0, 600.0, 1200.0))
    out = tmp_path / "table"
    folders = [str(first), str(longer), str(unfinished)]
    assert cli.main(["heldout-table", *folders, "-o", str(out)]) == 0
    assert f"CC: {longer} (MD 1200 s; not timed beside Timewarp)" in capsys.readouterr().out
    assert json.loads((out / "sources.json").read_text()) == {"AA": str(first), "CC": str(longer)}
    rows = (out / heldout.TABLE_FILE).read_text().splitlines()
    assert rows[2].startswith("| AA") and "(2 ± " in rows[2]  # after header and rule
    assert rows[3].startswith("| CC") and "(7 ± " in rows[3]
    assert (out / heldout.PLOT_FILE).is_file()

    _merge_folder(tmp_path / "other", ["GG"], model="dipeptides", GG=(1.0, 600.0, 600.0))
    assert cli.main(["heldout-table", str(first), str(tmp_path / "other"), "-o", str(out)]) == 2
    assert "differs in model" in capsys.readouterr().err
    # A folder from before MD was timed beside Timewarp is another evaluation, named either way.
    untimed = tmp_path / "untimed"
    _merge_folder(untimed, ["GG"], GG=(1.0, 600.0, 600.0))
    request = json.loads((untimed / heldout.REQUEST_FILE).read_text())
    del request["settings"]["md_timing_s"]
    (untimed / heldout.REQUEST_FILE).write_text(json.dumps(request))
    for folders in ((first, untimed), (untimed, first)):
        assert cli.main(["heldout-table", *map(str, folders), "-o", str(out)]) == 2
        assert "differs in settings.md_timing_s" in capsys.readouterr().err
    assert cli.main(["heldout-table", str(first), str(tmp_path), "-o", str(out)]) == 2
    assert "is not a `timewarp heldout` folder" in capsys.readouterr().err
    assert cli.main(["heldout-table", str(first), str(longer), "-o", str(longer)]) == 2
    assert "is one of the folders merged" in capsys.readouterr().err
    (tmp_path / "other" / heldout.REQUEST_FILE).write_text('{"peptides": "GG"}')
    assert cli.main(["heldout-table", str(tmp_path / "other"), "-o", str(out)]) == 2
    assert "is not a `timewarp heldout` request" in capsys.readouterr().err


@pytest.fixture(scope="module")
def walk_model(tmp_path_factory):
    pytest.importorskip("openmm_timewarp._timewarpplugin", reason="the plugin is not built")
    from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal

    return export_simple_proposal(
        GaussianRandomWalk(0.002),
        tmp_path_factory.mktemp("model") / "walk.pt",
        num_atoms=22,
        tau_ps=0.001,
        temperature_K=310.0,
        atom_types=("H", "C", "N", "O"),
    )


def test_short_evaluation_writes_results_and_resumes(
    tmp_path, reference_dir, walk_model, monkeypatch
):
    settings = heldout.HeldoutSettings(
        md_budget_s=1.0,
        timewarp_budget_s=1.0,
        md_baseline=MD_PRACTICAL,
        md_frame_interval_ps=0.05,
        exploration_budget_s=0.5,
        md_timing_s=0.5,
        benchmark=BenchmarkSettings(**FAST),
    )
    references = tmp_path / "references"
    references.mkdir()
    (references / "A").symlink_to(reference_dir)
    output = tmp_path / "eval"
    (result,) = heldout.run_heldout(
        ["A"], walk_model, output, settings, termini="capped", references=references, log=str
    )
    assert result["sequence"] == "A" and result["atoms"] == 22
    assert result["reference"] == str(references / "A")
    assert 0 < result["acceptance"] <= 1
    dihedrals = {k: v["ess_per_s"] for k, v in result["md_rates"].items() if k != "tic0"}
    assert set(dihedrals) == {"phi0", "psi0"}
    assert result["slowest_dihedral"] == min(dihedrals, key=dihedrals.get)
    for ratio in result["ratios"].values():
        assert ratio["ratio"] > 0 and ratio["error"] > 0
        # One second of MD is not 20 autocorrelation times of a slow dihedral: marked, not used.
        assert ratio["trusted"] == (
            ratio["md_long_enough"]
            and ratio["timewarp_window_closed"]
            and ratio["md_covers_reference"]
            and ratio["timewarp_covers_reference"]
        )
    assert set(result["basins"]) == {
        f"ALA2:{name}" for name in ("beta", "alphaR", "alphaL", "C7ax")
    }
    assert result["states"] and set(result["states"]) <= {"beta", "alphaR", "alphaL", "C7ax"}
    mode = result["exploration_mode"]
    assert mode["wall_s"] >= 0.5 and mode["ratio"]["bound"] in (None, "lower", "upper")
    assert result["basin_reference"]["runs"] == ["reference", MD_PRACTICAL]
    assert result["basin_reference"]["simulated_ns"] > result["md"]["simulated_ns"]
    # MD was timed in two windows beside Timewarp, and its rates are at that speed.
    timing = result["md"]["timing"]
    assert timing["wall_s"] >= 0.5 and len(timing["windows_wall_s_per_ns"]) == 2
    assert timing["wall_s_per_ns"] == pytest.approx(timing["wall_s"] / timing["simulated_ns"])
    result_file = output / "A-capped" / heldout.RESULT_FILE
    assert json.loads(result_file.read_text()) == result
    # Timewarp's chain is kept beside MD's frames, for analysing it again.
    with np.load(output / "A-capped" / heldout.TIMEWARP_FRAMES_FILE) as kept:
        assert kept["positions"].shape == (result["timewarp"]["frames"], 22, 3)
        assert np.all(np.diff(kept["times_s"]) >= 0) and len(kept["times_s"]) == len(
            kept["positions"]
        )
    assert "| A (capped) | 22 |" in (output / heldout.TABLE_FILE).read_text()
    assert (output / heldout.PLOT_FILE).read_bytes().startswith(b"\x89PNG")

    # The same evaluation with two processes gives the same result in another folder.
    (parallel,) = heldout.run_heldout(
        ["A"], walk_model, tmp_path / "jobs", settings, "capped", references, log=str, jobs=2
    )
    assert parallel["acceptance"] == pytest.approx(result["acceptance"], abs=0.2)
    assert set(parallel["basins"]) == set(result["basins"])
    assert (tmp_path / "jobs" / heldout.PLOT_FILE).is_file()

    # A finished peptide is read back without running anything.
    def no_run(*args, **kwargs):
        raise AssertionError("a finished peptide ran again")

    monkeypatch.setattr(heldout, "run_chain", no_run)
    monkeypatch.setattr(heldout, "record_long_runs", no_run)
    logged: list[str] = []
    (again,) = heldout.run_heldout(
        ["A"], walk_model, output, settings, "capped", references, log=logged.append
    )
    assert again == result and logged == ["[1/1] A (capped): read back"]
    # A result from before MD was timed beside Timewarp, in a folder whose request predates the
    # setting, is evaluated afresh against the saved MD run: Timewarp and the timing rerun, the
    # long run is neither recorded nor continued.
    monkeypatch.undo()
    monkeypatch.setattr(heldout, "record_long_runs", no_run)
    monkeypatch.setattr(heldout, "extend_long_run", no_run)
    untimed = json.loads(json.dumps(result))
    del untimed["md"]["timing"]
    result_file.write_text(json.dumps(untimed))
    request_file = output / heldout.REQUEST_FILE
    old_request = json.loads(request_file.read_text())
    del old_request["settings"]["md_timing_s"]
    request_file.write_text(json.dumps(old_request))
    logged.clear()
    (timed,) = heldout.run_heldout(
        ["A"], walk_model, output, settings, "capped", references, log=logged.append
    )
    assert logged == [
        "[1/1] A (capped): Timewarp afresh against its saved MD run, MD timed beside it"
    ]
    assert (
        timed["md"]["timing"]["wall_s"] >= 0.5 and timed["md"]["wall_s"] == result["md"]["wall_s"]
    )
    assert json.loads(request_file.read_text())["settings"]["md_timing_s"] == 0.5
    result = timed
    # A failing peptide is named: here its reference holds another molecule.
    (references / "G").symlink_to(reference_dir)
    for jobs in (1, 2):
        with pytest.raises(RuntimeError, match=r"G \(capped\): the reference .* another molecule"):
            heldout.run_heldout(
                ["G"],
                walk_model,
                tmp_path / "g",
                settings,
                "capped",
                references,
                log=str,
                jobs=jobs,
            )
    # Another request in the same folder is refused.
    with pytest.raises(ValueError, match="other settings"):
        heldout.run_heldout(
            ["A"],
            walk_model,
            output,
            heldout.HeldoutSettings(md_budget_s=2.0, benchmark=BenchmarkSettings(**FAST)),
            termini="capped",
            references=references,
            log=str,
        )

    # A larger MD budget continues the saved run from its last frame and evaluates afresh; the
    # run's first frames are kept, its record sums both segments.
    monkeypatch.undo()
    run_dir = output / "A-capped" / "md" / MD_PRACTICAL
    before = json.loads((run_dir / md_rates.RUN_FILE).read_text())
    first_frames = np.load(run_dir / md_rates.FRAMES_FILE)
    longer = dataclasses.replace(settings, md_budget_s=2.0)
    logged.clear()
    (extended,) = heldout.run_heldout(
        ["A"], walk_model, output, longer, "capped", references, log=logged.append
    )
    # The log says the saved result is not read back but the run continued.
    assert logged[0].startswith("[1/1] A (capped): continuing its MD run from ")
    assert logged[0].endswith(" s to 2 s, then Timewarp afresh")
    run = json.loads((run_dir / md_rates.RUN_FILE).read_text())
    frames = np.load(run_dir / md_rates.FRAMES_FILE)
    assert run["wall_s"] >= 2.0 and [s["seed"] for s in run["segments"]] == [
        before["seed"],
        before["seed"] + 1000,
    ]
    assert run["simulated_ns"] == pytest.approx(sum(s["simulated_ns"] for s in run["segments"]))
    assert len(frames) == run["frames"] > before["frames"]
    assert np.array_equal(frames[: before["frames"]], first_frames)
    assert extended["md"]["wall_s"] == run["wall_s"] and extended["date"] > result["date"]
    assert json.loads((output / "request.json").read_text())["settings"]["md_budget_s"] == 2.0
    # A result of the shorter run (as an extension interrupted before Timewarp reran leaves it)
    # is not read back: the peptide is evaluated afresh against the continued run.
    (output / "A-capped" / heldout.RESULT_FILE).write_text(json.dumps(result))
    logged.clear()
    (again,) = heldout.run_heldout(
        ["A"], walk_model, output, longer, "capped", references, log=logged.append
    )
    assert logged == [
        "[1/1] A (capped): Timewarp afresh against its saved MD run, MD timed beside it"
    ]
    assert again["md"]["wall_s"] == run["wall_s"] and again["date"] >= extended["date"]
    # Frames written by an extension whose record was never written are not read.
    np.save(run_dir / md_rates.FRAMES_FILE, np.concatenate([frames, frames[:3]]))
    expected = {key: run[key] for key in md_rates._MATCHING}
    assert len(md_rates.read_long_run(run_dir, expected)[1]) == run["frames"]
    # Runs are never shortened: a smaller budget is another request.
    with pytest.raises(ValueError, match="other settings"):
        heldout.run_heldout(
            ["A"], walk_model, output, settings, termini="capped", references=references, log=str
        )


def test_command_line_prints_the_draw_and_refuses_bad_input(tmp_path, capsys):
    draw = ["heldout", "--held-out", "dipeptides", "--count", "3", "--draw-seed", "1"]
    assert cli.main([*draw, "--print-peptides"]) == 0
    expected = heldout_draw.draw_peptides(heldout_draw.held_out_sequences("dipeptides"), 3, 1)
    assert capsys.readouterr().out.split() == expected
    assert cli.main([*draw, "--skip", "2", "--print-peptides"]) == 0
    assert capsys.readouterr().out.split() == heldout_draw.draw_peptides(
        heldout_draw.held_out_sequences("dipeptides"), 3, 1, skip=2
    )
    assert cli.main(draw) == 2
    assert "give --model and -o" in capsys.readouterr().err
    references = ["--references", str(tmp_path), "--model", "dipeptides", "-o", str(tmp_path)]
    assert cli.main([*draw, *references]) == 2
    assert f"has no reference for {' '.join(expected)}" in capsys.readouterr().err

    base = ["heldout", "--model", "dipeptides", "-o", str(tmp_path)]
    assert cli.main([*base, "--held-out", "dipeptides", "--count", "0"]) == 2
    assert "count must be between 1 and 200" in capsys.readouterr().err
    assert (
        cli.main(
            [
                *base,
                "--sequences",
                "A",
                "--termini",
                "capped",
                "--md-budget",
                "1",
                "--model",
                str(tmp_path / "missing.pt"),
            ]
        )
        == 2
    )
    assert "missing.pt" in capsys.readouterr().err
