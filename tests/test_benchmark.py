"""Tests of the side-by-side benchmark: HBond constraints, settings, the report and a short run."""

import json

import numpy as np
import openmm
import pytest
import torch
from helpers import SHORT_REFERENCE

from openmm_timewarp.data import peptides
from openmm_timewarp.data.peptides import backbone_torsions, build_peptide, create_system
from openmm_timewarp.evaluation import benchmark, comparisons, md_rates, md_reference, metrics, runs
from openmm_timewarp.evaluation.report import markdown_summary
from openmm_timewarp.evaluation.settings import (
    EXPLORATION,
    MD_DATA_PROTOCOL,
    MD_HMR,
    MD_PRACTICAL,
    MD_PROTOCOLS,
    SAMPLERS,
    TIMEWARP,
    BenchmarkSettings,
)
from openmm_timewarp.sampling.diagnostics import stuck_message

torch.set_num_threads(1)

#: A reference and budget small enough for seconds: 10 ps of MD at 50 fs per frame.
FAST = dict(
    budget_s=1.0,
    **SHORT_REFERENCE,
    tica_lag_ps=0.25,
    md_frame_interval_ps=0.05,
    num_starts=2,
)


def _check_schema(report: dict, samplers: tuple[str, ...]) -> None:
    assert set(report) >= {
        "date",
        "machine",
        "peptide",
        "model",
        "settings",
        "reference",
        "samplers",
        "ratios",
        "discovery_speedups",
        "files",
    }
    assert report["peptide"] == {
        "sequence": "A",
        "termini": "capped",
        "atoms": 22,
        "system": peptides.FORCEFIELD_NAME,
    }
    assert isinstance(report["reference"]["frames"], int)
    assert set(report["reference"]["states_to_discover"]) <= set(
        report["reference"]["state_populations"]
    )
    assert list(report["samplers"]) == list(samplers)
    for result in report["samplers"].values():
        assert result["chains"] == 2
        assert FAST["budget_s"] <= result["wall_s"] < 1.5 * FAST["budget_s"] + 0.5
        assert result["frames"] > 2
        assert set(result["ess"]) == {"tic0", "phi0", "psi0"}
        for record in result["ess"].values():
            assert record["ess_per_s"] == pytest.approx(record["ess"] / result["wall_s"])
            assert record["ess_per_s_error"] >= 0
            assert isinstance(record["reliable"], bool)
        assert 0 <= result["jsd_ramachandran"] <= 1 and 0 <= result["jsd_tic"] <= 1
        assert 0 <= result["phi_positive"]["population"] <= 1
        assert len(result["discovery"]) == 2
        for chain in result["discovery"]:
            for seconds in chain["first_visit_s"].values():
                assert seconds is None or 0 <= seconds <= result["wall_s"]


def test_hbond_constraints_cover_every_bond_to_hydrogen():
    modeller = build_peptide("A")
    system = create_system(modeller.topology)
    constrained = peptides.with_hbond_constraints(system, modeller.topology)
    hydrogens = sum(atom.element.symbol == "H" for atom in modeller.topology.atoms())
    assert system.getNumConstraints() == 0
    assert constrained.getNumConstraints() == hydrogens == 12
    bonds = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    lengths = {
        tuple(sorted(bonds.getBondParameters(i)[:2])): bonds.getBondParameters(i)[2]
        for i in range(bonds.getNumBonds())
    }
    for i in range(constrained.getNumConstraints()):
        a, b, length = constrained.getConstraintParameters(i)
        assert length == lengths[tuple(sorted((a, b)))]


def test_hmr_baseline_repartitions_like_openmm_and_constrains_hbonds():
    """md-4fs-hmr: hydrogens at 4 amu taken from their heavy atoms (OpenMM's own rule, as in
    ``ForceField.createSystem(hydrogenMass=...)``), the total mass kept, bonds to H constrained."""
    modeller = build_peptide("A")
    topology = modeller.topology
    system = create_system(topology)
    hmr = runs.md_system(MD_HMR, system, topology)
    protocol = MD_PROTOCOLS[MD_HMR]
    assert protocol.timestep_fs == 4.0 and protocol.hydrogen_mass_amu == 4.0

    def masses(s: openmm.System) -> np.ndarray:
        return np.array([s.getParticleMass(i).value_in_unit(openmm.unit.dalton) for i in range(22)])

    expected = openmm.app.ForceField(*peptides.FORCEFIELD_FILES).createSystem(
        topology, constraints=openmm.app.HBonds, hydrogenMass=4.0 * openmm.unit.amu
    )
    assert masses(hmr) == pytest.approx(masses(expected), abs=1e-12)
    assert masses(hmr).sum() == pytest.approx(masses(system).sum(), abs=1e-9)
    hydrogens = [atom.index for atom in topology.atoms() if atom.element.symbol == "H"]
    assert masses(hmr)[hydrogens] == pytest.approx(np.full(12, 4.0))
    assert masses(system)[hydrogens] == pytest.approx(np.full(12, 1.008))  # the input is kept
    constrained = {tuple(sorted(hmr.getConstraintParameters(i)[:2])) for i in range(12)}
    assert hmr.getNumConstraints() == 12
    assert all(set(pair) & set(hydrogens) for pair in constrained)
    with pytest.raises(ValueError, match="no mass"):
        peptides.with_hydrogen_mass(system, topology, 10.0)


def _ess(value: float, error: float, reliable: bool = False) -> dict:
    return {"ess_per_s": value, "ess_per_s_error": error, "reliable": reliable}


def test_fastest_md_baseline_is_chosen_per_coordinate():
    samplers = {
        TIMEWARP: {"ess": {"tic0": _ess(60.0, 6.0), "psi0": _ess(30.0, 3.0)}},
        MD_DATA_PROTOCOL: {"ess": {"tic0": _ess(0.5, 0.1), "psi0": _ess(0.1, 0.05)}},
        MD_PRACTICAL: {"ess": {"tic0": _ess(2.0, 0.2), "psi0": _ess(1.0, 0.1, True)}},
        MD_HMR: {"ess": {"tic0": _ess(3.0, 0.4), "psi0": _ess(0.5, 0.2)}},
    }
    fastest = comparisons.fastest_md_baselines(samplers)
    assert fastest["tic0"]["baseline"] == MD_HMR
    assert fastest["psi0"]["baseline"] == MD_PRACTICAL
    assert fastest["psi0"]["reliable"] is True
    assert fastest["tic0"]["ratio"] == pytest.approx(20.0)
    assert fastest["tic0"]["error"] == pytest.approx(20.0 * np.hypot(0.1, 0.4 / 3.0))
    assert fastest["psi0"]["ratio"] == pytest.approx(30.0)
    assert fastest["psi0"]["error"] == pytest.approx(30.0 * np.hypot(0.1, 0.1))
    # Without Timewarp the fastest baseline is still named, with no ratio.
    del samplers[TIMEWARP]
    assert "ratio" not in comparisons.fastest_md_baselines(samplers)["tic0"]
    assert comparisons.fastest_md_baselines({}) == {}


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown samplers"):
        BenchmarkSettings(samplers=("langevin",))
    with pytest.raises(ValueError, match="budget_s"):
        BenchmarkSettings(budget_s=0)
    with pytest.raises(ValueError, match="torch_threads"):
        BenchmarkSettings(torch_threads=0)
    with pytest.raises(ValueError, match="needs a model"):
        benchmark.run_benchmark("A", None, tmp_path)


def test_short_md_benchmark_writes_the_report(tmp_path, reference_dir):
    samplers = (MD_DATA_PROTOCOL, MD_PRACTICAL, MD_HMR)
    settings = BenchmarkSettings(samplers=samplers, **FAST)
    report = benchmark.run_benchmark(
        "A", None, tmp_path, settings, reference_dir=reference_dir, show_progress=False
    )
    _check_schema(report, samplers)
    assert report == json.loads((tmp_path / "report.json").read_text())
    for name in report["files"].values():
        assert (tmp_path / name).stat().st_size > 1000
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"| {name} |" in summary for name in samplers)
    # 2 and 4 fs cover four and eight times the simulated time per step of 0.5 fs.
    simulated = {
        name: sum(c["simulated_ps"] for c in report["samplers"][name]["per_chain"])
        for name in samplers
    }
    steps = {name: report["samplers"][name]["steps"] for name in samplers}
    assert simulated[MD_PRACTICAL] == pytest.approx(steps[MD_PRACTICAL] * 0.002)
    assert simulated[MD_DATA_PROTOCOL] == pytest.approx(steps[MD_DATA_PROTOCOL] * 0.0005)
    assert simulated[MD_HMR] == pytest.approx(steps[MD_HMR] * 0.004)
    assert set(report["fastest_md"]) == {"tic0", "phi0", "psi0"}
    for key, record in report["fastest_md"].items():
        rates = {name: report["samplers"][name]["ess"][key]["ess_per_s"] for name in samplers}
        assert record["baseline"] == max(rates, key=rates.get)
        assert f"- fastest MD baseline on {key}: {record['baseline']}" in summary


def test_a_reference_of_another_molecule_is_refused(reference_dir):
    modeller = build_peptide("G")
    with pytest.raises(ValueError, match="another molecule"):
        md_reference.load_reference(reference_dir, modeller.topology, BenchmarkSettings())


def test_frames_are_thinned_to_stay_below_max_frames(reference_dir):
    modeller = build_peptide("A")
    system = create_system(modeller.topology)
    settings = BenchmarkSettings(max_frames=8, md_frame_interval_ps=0.0005)
    start = np.asarray(modeller.positions.value_in_unit(openmm.unit.nanometer))
    chain = runs.run_chain(
        MD_DATA_PROTOCOL, None, system, modeller.topology, start, 0.3, settings, seed=3
    )
    assert len(chain.positions) < 8
    assert chain.stride > 1 and chain.stride & (chain.stride - 1) == 0  # doubled from 1
    assert np.all(np.diff(chain.times_s) > 0)


def test_short_timewarp_benchmark(tmp_path, reference_dir):
    pytest.importorskip("openmm_timewarp._timewarpplugin", reason="the plugin is not built")
    from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal

    model = export_simple_proposal(
        GaussianRandomWalk(0.002),
        tmp_path / "walk.pt",
        num_atoms=22,
        tau_ps=0.001,
        temperature_K=310.0,
        atom_types=("H", "C", "N", "O"),
    )
    settings = BenchmarkSettings(**FAST)
    report = benchmark.run_benchmark(
        "A", model, tmp_path / "report", settings, reference_dir=reference_dir, show_progress=False
    )
    _check_schema(report, SAMPLERS)
    for name in (TIMEWARP, EXPLORATION):
        result = report["samplers"][name]
        assert 0 < result["acceptance"] <= 1
        profile = result["profile"]
        assert profile["model_s"] > 0 and profile["energy_s"] > 0
        assert profile["model_s"] + profile["energy_s"] < profile["wall_s"]
        assert sum(c["proposals"] for c in result["per_chain"]) >= result["steps"]
    ratio = report["ratios"][f"{TIMEWARP}/{MD_PRACTICAL}"]["tic0"]
    assert ratio["ratio"] > 0 and ratio["error"] >= 0
    # Chains that accepted nothing are named in the summary.
    assert report["samplers"][TIMEWARP]["stuck_chains"] == []
    report["samplers"][TIMEWARP]["stuck_chains"] = [stuck_message("start 0", 2500, 0)]
    assert "warning, timewarp: start 0 accepted none" in markdown_summary(report)


def test_reference_backbone_atoms_give_phi():
    from openmm_timewarp.evaluation import reference

    modeller = build_peptide("A", phi=60.0, psi=40.0)
    xyz = np.asarray(modeller.positions.value_in_unit(openmm.unit.nanometer))
    atoms, phi_atoms, psi_atoms = reference._backbone_atoms(modeller.topology)
    assert (phi_atoms, psi_atoms) == ([0, 1, 2, 3], [1, 2, 3, 4])
    backbone = reference._backbone_trajectory(xyz[atoms][None])
    dihedrals = reference.mdtraj.compute_dihedrals(backbone, [phi_atoms, psi_atoms])[0]
    assert np.degrees(dihedrals) == pytest.approx([60.0, 40.0], abs=1.0)
    # A zwitterionic tetrapeptide: its third phi is residue 4's, its third psi residue 3's.
    tetrapeptide = build_peptide("YSKC", "zwitterionic")
    phis, psis = backbone_torsions(tetrapeptide.topology)
    atoms, phi_atoms, psi_atoms = reference._backbone_atoms(tetrapeptide.topology, 2)
    assert [atoms[i] for i in phi_atoms] == list(phis[2])
    assert [atoms[i] for i in psi_atoms] == list(psis[2])
    residue = [a.residue.index for a in tetrapeptide.topology.atoms()]
    assert (residue[phis[2][2]], residue[psis[2][1]]) == (3, 2)
    with pytest.raises(ValueError, match="between 0 and 2, got 3"):
        reference._backbone_atoms(tetrapeptide.topology, 3)
    assert reference.geometric_temperatures(310.0, 620.0, 3) == pytest.approx(
        [310.0, 310.0 * 2**0.5, 620.0]
    )
    with pytest.raises(ValueError):
        reference.geometric_temperatures(310.0, 300.0, 4)


def test_replica_frames_find_a_ladder_state_by_temperature():
    """A temperature names its ladder state within 1 K; one off the ladder is refused with it."""
    from openmm_timewarp.evaluation import reference

    ladder = reference.geometric_temperatures(310.0, 700.0, 6)
    frames = reference.ReplicaFrames(None, np.zeros((1, 6), int), np.zeros((1, 6, 6)), ladder)
    assert frames.state_at(310.0) == 0
    assert frames.state_at(505.0) == 3  # the ladder's 505.4 K
    with pytest.raises(ValueError, match="no state of the ladder at 500 K; it has 310.0, 364.8"):
        frames.state_at(500.0)


@pytest.mark.slow
def test_parallel_tempering_records_every_residue(tmp_path):
    """A tempering run of a tetrapeptide gives each residue's backbone angles at 310 K: the same
    phi as the run's recorded torsion, and every residue's basins."""
    pytest.importorskip("openmmtools")
    from openmm_timewarp.evaluation import heldout_basins, reference, reference_reweighting

    reference.run_reference(
        tmp_path, 6, steps_per_iteration=10, sequence="YSKC", termini="zwitterionic", torsion=2
    )
    trajectory = reference.read_state_trajectory(tmp_path, discard_fraction=0.0)
    assert trajectory.n_frames == 6  # iterations 1..6 (0 is the start)
    assert [r.name for r in trajectory.topology.residues] == ["TYR", "SER", "LYS", "CYS"]
    # Its last phi (CYS4's) is the run's recorded torsion 2, frame by frame at 310 K.
    _, phi = reference.mdtraj.compute_phi(trajectory)
    recorded = reference.read_run(tmp_path, discard_fraction=0.0)
    np.testing.assert_allclose(phi[:, 2], recorded.phi_by_state[:, 0], atol=1e-5)
    # A hotter state holds other frames.
    hot = reference.read_state_trajectory(tmp_path, discard_fraction=0.0, state=5)
    assert not np.allclose(hot.xyz, trajectory.xyz)
    _, populations = heldout_basins.states_and_basins([trajectory])
    assert {name.split(":")[0] for name in populations} == {"TYR1", "SER2", "LYS3", "CYS4"}
    # Every replica's frames reweighted to 310 K give the same basins, each residue's summing to 1.
    replica_frames = reference.read_replica_frames(tmp_path, discard_fraction=0.0)
    reweighted, frames = reference_reweighting.reweighted_basins(replica_frames)
    assert frames == 6 * reference.NUM_REPLICAS
    assert set(reweighted) == set(populations)
    for residue in ("TYR1", "SER2", "LYS3", "CYS4"):
        total = sum(v["population"] for k, v in reweighted.items() if k.startswith(residue + ":"))
        assert total == pytest.approx(1.0)
    assert all(v["error"] > 0 for v in reweighted.values())
    # The same at the hottest state, named by its temperature.
    hottest, _ = reference_reweighting.reweighted_basins(
        replica_frames, replica_frames.state_at(700.0)
    )
    assert set(hottest) == set(populations)
    assert sum(v["population"] for k, v in hottest.items() if k.startswith("TYR1:")) == (
        pytest.approx(1.0)
    )
    with pytest.raises(ValueError, match="state must be in"):
        reference.read_state_trajectory(tmp_path, state=6)
    # A run stored before every torsion was recorded is refused with a clear message.
    peptide = json.loads((tmp_path / reference.PEPTIDE_NAME).read_text())
    del peptide["atoms"]
    (tmp_path / reference.PEPTIDE_NAME).write_text(json.dumps(peptide))
    with pytest.raises(ValueError, match="one phi and one psi only"):
        reference.read_state_trajectory(tmp_path)


@pytest.mark.slow
def test_parallel_tempering_cpu_budget_ends_at_a_checkpoint(tmp_path):
    """A run ended by its CPU budget stops where a resumed run restarts, so no iteration is lost."""
    pytest.importorskip("openmmtools")
    from openmm_timewarp.evaluation import reference

    # Building and minimising first, outside the budget, so the budget buys iterations; chunks
    # of 7 meet a checkpoint by themselves only at 350 iterations.
    assert reference.run_reference(tmp_path, 1, steps_per_iteration=5) == 1
    done = reference.run_reference(tmp_path, 10**6, chunk=7, cpu_budget_s=2.0)
    assert done >= reference.CHECKPOINT_INTERVAL and done % reference.CHECKPOINT_INTERVAL == 0
    assert reference.run_reference(tmp_path, done + 10, chunk=10) == done + 10
    assert reference.read_run(tmp_path, discard_fraction=0.0).iterations == done + 10


@pytest.mark.slow
def test_parallel_tempering_reference_resumes_and_analyses(tmp_path, reference_dir):
    pytest.importorskip("openmmtools")
    from openmm_timewarp.evaluation import reference

    assert reference.run_reference(tmp_path, 20, steps_per_iteration=20, chunk=7) == 20
    # A second call continues the stored run (its settings come from the storage).
    assert reference.run_reference(tmp_path, 45, chunk=7) == 45
    result = reference.analyze_reference(tmp_path)
    assert result["iterations"] == 45
    assert result["steps_per_iteration"] == 20
    assert len(result["exchange_acceptance_neighbours"]) == reference.NUM_REPLICAS - 1
    assert all(0 <= rate <= 1 for rate in result["exchange_acceptance_neighbours"])
    for key in ("phi_positive", "left_handed"):
        assert 0 <= result[key]["population"] <= 1
        assert result[key]["error_blocks"] >= 0 and result[key]["ess"] >= 1
    assert json.loads((tmp_path / reference.RESULT_NAME).read_text()) == result

    # The benchmark compares its samplers with the 310 K state of the run.
    settings = BenchmarkSettings(samplers=(MD_PRACTICAL,), **FAST)
    report = benchmark.run_benchmark(
        "A",
        None,
        tmp_path / "report",
        settings,
        reference_dir=reference_dir,
        show_progress=False,
        parallel_tempering_dir=tmp_path,
    )
    tempering = report["parallel_tempering"]
    assert tempering["frames_at_target_temperature"] == 45 + 1 - 4  # iterations 4..45
    assert set(tempering["state_populations"]) == set(metrics.RAMACHANDRAN_STATES)
    comparison = report["samplers"][MD_PRACTICAL]["vs_parallel_tempering"]
    assert 0 <= comparison["jsd_ramachandran"] <= 1
    assert set(comparison["state_population_deviation_sigma"]) == set(
        tempering["state_populations"]
    )


def test_command_line(tmp_path, reference_dir, capsys):
    from openmm_timewarp import cli

    arguments = [
        "benchmark",
        "A",
        "--samplers",
        "md-2fs-hbonds",
        "--reference",
        str(reference_dir),
        "--tica-lag-ps",
        "0.25",
        "--md-frame-interval-ps",
        "0.05",
        "--no-progress",
    ]
    status = cli.main([*arguments, "--budget", "0.5", "-o", str(tmp_path)])
    assert status == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["samplers"]) == ["md-2fs-hbonds"]
    assert "| md-2fs-hbonds |" in capsys.readouterr().out
    assert cli.main([*arguments, "--budget", "0", "-o", str(tmp_path / "bad")]) == 2
    assert "budget_s must be positive" in capsys.readouterr().err


def test_command_line_runs_the_hmr_baseline(tmp_path, reference_dir, capsys):
    from openmm_timewarp import cli

    arguments = ["benchmark", "A", "--samplers", "md-4fs-hmr", "--reference", str(reference_dir)]
    arguments += ["--tica-lag-ps", "0.25", "--md-frame-interval-ps", "0.05", "--no-progress"]
    assert cli.main([*arguments, "--budget", "0.5", "-o", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    result = report["samplers"]["md-4fs-hmr"]
    assert result["frames"] > 2
    assert sum(c["simulated_ps"] for c in result["per_chain"]) == pytest.approx(
        result["steps"] * 0.004
    )
    assert {record["baseline"] for record in report["fastest_md"].values()} == {"md-4fs-hmr"}
    out = capsys.readouterr().out
    assert "| md-4fs-hmr |" in out and "- fastest MD baseline on psi0: md-4fs-hmr" in out


def test_command_line_with_a_system_file(tmp_path, reference_dir, capsys):
    """``--system``: the samplers run on the given System (recorded in the report); one of
    other atoms is refused."""
    import openmm

    from openmm_timewarp import cli

    system_file, other_file = tmp_path / "system.xml", tmp_path / "other.xml"
    assert (
        cli.main(["build", "A", "-o", str(tmp_path / "ad.pdb"), "--system", str(system_file)]) == 0
    )
    other = openmm.System()
    other.addParticle(1.0)
    other_file.write_text(openmm.XmlSerializer.serialize(other))
    arguments = ["benchmark", "A", "--samplers", "md-2fs-hbonds", "--reference", str(reference_dir)]
    arguments += ["--tica-lag-ps", "0.25", "--md-frame-interval-ps", "0.05", "--no-progress"]
    arguments += ["--budget", "0.5"]
    assert cli.main([*arguments, "--system", str(system_file), "-o", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["peptide"]["system"] == str(system_file)
    capsys.readouterr()
    assert cli.main([*arguments, "--system", str(other_file), "-o", str(tmp_path / "bad")]) == 2
    assert "1 particles but the peptide has 22" in capsys.readouterr().err


def _ar1(length: int, rho: float, seed: int) -> np.ndarray:
    """An AR(1) series: tau_int = (1 + rho) / (1 - rho) frames."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=length) * np.sqrt(1 - rho**2)
    series = np.empty(length)
    series[0] = rng.normal()
    for i in range(1, length):
        series[i] = rho * series[i - 1] + noise[i]
    return series


def test_a_long_run_counts_only_when_20_autocorrelation_times_long():
    """rho 0.9 gives tau_int 19 frames: 4,000 frames are about 210 tau_int, 150 frames about 8."""
    long = metrics.integrated_autocorrelation_time(_ar1(4000, 0.9, seed=0))
    assert abs(long.tau_int - 19.0) < 3 * long.tau_int_error
    rate = md_rates.mark_long_enough(long.as_dict(), frame_interval_ps=2.0)
    assert rate["tau_int_ps"] == pytest.approx(2.0 * long.tau_int)
    assert rate["autocorrelation_times"] == pytest.approx(
        4000 / (long.tau_int + long.tau_int_error)
    )
    assert rate["long_enough"] is True
    # The short run underestimates its tau_int: by the point estimate alone it would count
    # (the control), by tau_int plus its error it does not.
    short = metrics.integrated_autocorrelation_time(_ar1(150, 0.9, seed=0))
    assert 150 / short.tau_int >= 20
    assert md_rates.mark_long_enough(short.as_dict(), 2.0)["long_enough"] is False
    # A window that did not close is never long enough, however many frames it has.
    open_window = dict(long.as_dict(), window_closed=False, num_samples=10**6)
    assert md_rates.mark_long_enough(open_window, 1.0)["long_enough"] is False


def _rate(
    value: float, error: float, long_enough: bool, times: float = 50.0, missed: float = 0.0
) -> dict:
    return {
        "ess_per_s": value,
        "ess_per_s_error": error,
        "long_enough": long_enough,
        "tau_int_ps": 40.0,
        "autocorrelation_times": times,
        "missed_reference_mass": missed,
        "covers_reference": missed < 0.01,
    }


def test_fastest_long_run_and_timewarp_ratio_with_propagated_error():
    runs = {
        MD_PRACTICAL: {"ess": {"psi0": _rate(0.3, 0.03, True), "phi0": _rate(2.0, 0.1, False, 9)}},
        MD_HMR: {"ess": {"psi0": _rate(0.9, 0.1, False, 12), "phi0": _rate(1.0, 0.2, False, 15)}},
    }
    timewarp = {"psi0": {"ess_per_s": 90.0, "ess_per_s_error": 4.5}, "phi0": {"ess_per_s": 1.0}}
    fastest = md_rates.fastest_long_runs(runs, timewarp)
    # md-4fs-hmr is faster on psi0 but too short to count; md-2fs-hbonds is the one measured.
    assert fastest["psi0"]["baseline"] == MD_PRACTICAL
    assert fastest["psi0"]["ratio"] == pytest.approx(300.0)
    assert fastest["psi0"]["error"] == pytest.approx(300.0 * np.hypot(0.05, 0.1))
    assert fastest["phi0"]["baseline"] is None and "ratio" not in fastest["phi0"]
    assert "longest: md-4fs-hmr, 15" in fastest["phi0"]["note"]
    assert "ratio" not in md_rates.fastest_long_runs(runs)["psi0"]
    # A long run that never visited a region the reference populates is not used either.
    runs[MD_HMR]["ess"]["psi0"] = _rate(0.9, 0.1, True, 50, missed=0.3)
    assert md_rates.fastest_long_runs(runs)["psi0"]["baseline"] == MD_PRACTICAL
    runs[MD_PRACTICAL]["ess"]["psi0"] = _rate(0.3, 0.03, True, 50, missed=0.3)
    assert md_rates.fastest_long_runs(runs)["psi0"]["baseline"] is None
    assert "missing 30.0% of the reference" in md_rates.fastest_long_runs(runs)["psi0"]["note"]


def test_long_md_runs_feed_the_benchmark(tmp_path, reference_dir, capsys):
    """`timewarp md-rate` records a run as the benchmark runs it; `timewarp benchmark --md-rates`
    takes its rates (ESS of the whole run over its wall time), and refuses runs of other
    settings."""
    from openmm_timewarp import cli

    runs = tmp_path / "runs"
    common = ["A", "--reference", str(reference_dir), "--no-progress"]
    recording = ["md-rate", *common, "--baselines", MD_PRACTICAL, "--budget", "0.5"]
    assert cli.main([*recording, "--frame-interval-ps", "0.05", "-o", str(runs)]) == 0
    assert f"{runs / MD_PRACTICAL}:" in capsys.readouterr().out
    record = json.loads((runs / MD_PRACTICAL / md_rates.RUN_FILE).read_text())
    frames = np.load(runs / MD_PRACTICAL / md_rates.FRAMES_FILE)
    assert frames.shape == (record["frames"], 22, 3) and record["frames"] > 2
    assert record["simulated_ns"] == pytest.approx(record["steps"] * 2e-6)
    assert record["wall_s_per_ns"] == pytest.approx(record["wall_s"] / record["simulated_ns"])
    assert record["frame_interval_ps"] == pytest.approx(0.05)

    arguments = ["benchmark", *common, "--samplers", MD_PRACTICAL, "--tica-lag-ps", "0.25"]
    arguments += ["--md-frame-interval-ps", "0.05", "--budget", "0.5", "--md-rates", str(runs)]
    assert cli.main([*arguments, "-o", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    run = report["md_rates"]["runs"][MD_PRACTICAL]
    assert set(run["ess"]) == {"tic0", "phi0", "psi0"} and run["same_host"] is True
    # The long run's ESS at the wall time per ns of the benchmark's own run of the baseline.
    assert run["run_wall_s"] == record["wall_s"]
    benchmark_md = report["samplers"][MD_PRACTICAL]["per_chain"]
    wall_s_per_ns = sum(c["wall_s"] for c in benchmark_md) / sum(
        c["simulated_ps"] / 1000 for c in benchmark_md
    )
    assert run["timing"]["wall_s_per_ns"] == pytest.approx(wall_s_per_ns)
    for rate in run["ess"].values():
        assert rate["num_samples"] == record["frames"]
        assert rate["ess_per_s"] == pytest.approx(
            rate["ess"] / (record["simulated_ns"] * wall_s_per_ns)
        )
        assert rate["long_enough"] == (
            rate["window_closed"] and rate["autocorrelation_times"] >= 20
        )
    assert set(report["md_rates"]["fastest"]) == {"tic0", "phi0", "psi0"}
    assert "- MD rates from long runs" in capsys.readouterr().out

    with pytest.raises(ValueError, match="MD baselines"):
        md_rates.record_long_runs("A", tmp_path, BenchmarkSettings(samplers=(TIMEWARP,)))
    assert cli.main([*arguments, "--temperature", "300", "-o", str(tmp_path / "bad")]) == 2
    assert "temperature_K 310.0, the benchmark 300.0" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    arguments[-1] = str(tmp_path / "empty")
    assert cli.main([*arguments, "-o", str(tmp_path / "bad")]) == 2
    assert "no long MD runs" in capsys.readouterr().err


def test_summary_marks_missed_states_and_unreliable_estimates():
    from openmm_timewarp.evaluation.report import _marks

    assert _marks({"reliable": True}, missed=False) == ""
    assert _marks({"reliable": True}, missed=True) == " *"
    assert _marks({"reliable": False}, missed=True) == " *†"
    assert _marks({"reliable": False}, missed=False) == " †"
