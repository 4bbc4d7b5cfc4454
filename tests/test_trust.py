"""Trust and safety (docs/trust.md): nothing untrusted runs, nothing fails silently.

Each test is one case of the table in docs/trust.md: a hostile or damaged input, and the clear
refusal (or the rebuild) that now answers it.
"""

import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from helpers import NonFinite, tethered_particles
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.checkpoints import load_checkpoint, save_checkpoint
from openmm_timewarp.cli import main
from openmm_timewarp.data.peptides import replace_custom_gb_with_gbsaobc
from openmm_timewarp.models.contract import (
    BUNDLED_MODEL_DIR,
    CHECKSUM_FILE,
    ModelMetadata,
    atom_types_for_topology,
    load_metadata,
    load_model,
    resave,
    resolve_model_path,
    save_module,
)
from openmm_timewarp.proposals.simple import GaussianRandomWalk, export_simple_proposal
from openmm_timewarp.training.likelihood import TrainingSettings, train

EXAMPLE_PDB = Path(__file__).parents[1] / "examples" / "alanine-dipeptide.pdb"
REFERENCE = openmm.Platform.getPlatformByName("Reference")


class Shift(torch.nn.Module):
    """x' = x + shift + 0 * noise, logQRatio 0."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim: int = 1
        self.shift = torch.nn.Parameter(torch.full((3,), 0.01))

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return positions.unsqueeze(0) + self.shift + 0.0 * noise, torch.zeros(noise.shape[0])


def simple_metadata(num_atoms: int | None = None) -> ModelMetadata:
    return ModelMetadata("test", "simple", 1.0, 300.0, "any", "element", ["X"], num_atoms)


# Checkpoints: data only, checksummed, clear errors.


class _PlantsMarker:
    """Unpickling this creates a file: the harmless stand-in for code in a planted checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class _Displacement(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(3))

    def training_nll(self, x_cond, x_next, atom_types):
        return (0.5 * (x_next - x_cond - self.shift) ** 2).sum(dim=(1, 2))


def _train_small(output: Path, model: torch.nn.Module | None = None) -> None:
    generator = torch.Generator().manual_seed(0)
    pairs = [torch.randn(64, 2, 3, generator=generator) for _ in range(2)]
    settings = TrainingSettings(
        max_steps=4, batch_size=8, validate_every=2, checkpoint_every=2, patience=10
    )
    types = torch.zeros(2, dtype=torch.int64)
    train(model or _Displacement(), pairs, pairs, types, output, settings, progress=False)


def test_a_planted_training_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "marker"
    output = tmp_path / "run"
    output.mkdir()
    torch.save({"settings": _PlantsMarker(marker)}, output / "checkpoint.pt")
    with pytest.raises(ValueError, match="checkpoint.pt is not a checkpoint"):
        _train_small(output)
    assert not marker.exists()


def test_damaged_or_foreign_checkpoints_are_refused_by_name(tmp_path):
    output = tmp_path / "run"
    _train_small(output)
    checkpoint = output / "checkpoint.pt"
    content = checkpoint.read_bytes()
    assert load_checkpoint(checkpoint)["step"] == 4

    checkpoint.write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=f"{checkpoint} is not a checkpoint"):
        load_checkpoint(checkpoint)

    # One byte of the payload changed: the outer archive still reads, the checksum does not match.
    record = torch.load(io_bytes(content), weights_only=True)
    record["payload"][len(record["payload"]) // 2] ^= 1
    torch.save(record, checkpoint)
    with pytest.raises(ValueError, match="checksum does not match"):
        load_checkpoint(checkpoint)

    checkpoint.write_bytes(content)
    with pytest.raises(ValueError, match="parameters of another model"):
        _train_small(output, model=_Wider())


class _Wider(_Displacement):
    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(4))


def io_bytes(content: bytes):
    import io

    return io.BytesIO(content)


def test_checkpoint_round_trip_keeps_tensors_and_values(tmp_path):
    state = {"tensor": torch.arange(5.0), "nested": {"n": 3, "text": "a", "list": [1.5, None]}}
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["tensor"], state["tensor"]) and loaded["nested"] == state["nested"]


# Non-finite states: refused by the integrator, nothing changed.


def _alanine_dipeptide_context() -> tuple[TimewarpIntegrator, openmm.Context, np.ndarray]:
    pdb = app.PDBFile(str(EXAMPLE_PDB))
    system = app.ForceField("amber14-all.xml", "implicit/obc2.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None
    )
    replace_custom_gb_with_gbsaobc(system)
    integrator = TimewarpIntegrator("alanine-dipeptide", 310, topology=pdb.topology, seed=3)
    context = openmm.Context(system, integrator, REFERENCE)
    positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return integrator, context, positions


@pytest.mark.parametrize("case", ["NaN coordinate", "atoms on top of each other"])
def test_a_non_finite_start_is_refused_and_nothing_changes(case):
    integrator, context, positions = _alanine_dipeptide_context()
    broken = positions.copy()
    if case == "NaN coordinate":
        broken[3, 1] = np.nan
    else:
        broken[5] = broken[4]
    context.setPositions(broken)
    with pytest.raises(openmm.OpenMMException, match="non-finite|finite one"):
        integrator.step(5)
    state = context.getState(getPositions=True)
    np.testing.assert_array_equal(state.getPositions(asNumpy=True)._value, broken)
    assert context.getStepCount() == 0 and state.getTime()._value == 0.0
    assert integrator.getNumSteps() == 0 and integrator.getNumProposed() == 0
    context.setPositions(positions)  # a finite state again: the integrator goes on
    integrator.step(5)
    assert integrator.getNumSteps() == 5


def test_an_atom_at_1e30_nm_gets_the_warning():
    # Its energy (about 5e65 kJ/mol) is finite, so the state is a valid one; the model's
    # proposals from it are not (float32 overflow), which the warning says.
    integrator, context, positions = _alanine_dipeptide_context()
    positions[7] = 1e30
    context.setPositions(positions)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        integrator.step(20)
    assert integrator.getNumAccepted() == 0


def test_a_chain_whose_proposals_are_all_non_finite_warns(tmp_path):
    path = export_simple_proposal(NonFinite(), tmp_path / "nan.pt")
    integrator = TimewarpIntegrator(path, 300, atom_types=[0] * 3, max_proposal_batch=4)
    context = openmm.Context(tethered_particles(3), integrator, REFERENCE)
    context.setPositions(np.eye(3) * 0.1)
    with pytest.warns(RuntimeWarning, match="all 12 proposals so far were non-finite"):
        integrator.step(12)


# Model resolution: a bundled name is the bundled model.


def test_bundled_names_beat_files_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "alanine-dipeptide"
    planted.write_text("HETATM not a model")
    bundled = BUNDLED_MODEL_DIR / "alanine-dipeptide.pt"
    assert resolve_model_path("alanine-dipeptide") == bundled
    assert load_metadata("alanine-dipeptide").name == "alanine-dipeptide"
    # A path is a path: ./name, or a Path object of an existing file.
    assert resolve_model_path("./alanine-dipeptide") == Path("./alanine-dipeptide")
    assert resolve_model_path(Path("alanine-dipeptide")) == Path("alanine-dipeptide")
    planted.unlink()
    assert resolve_model_path(Path("alanine-dipeptide")) == bundled
    with pytest.raises(ValueError, match="not a file, and not a bundled model"):
        resolve_model_path("./alanine-dipeptide")


# Model files: checksummed, verified on load, finite weights.


def _same_module(a: torch.jit.ScriptModule, b: torch.jit.ScriptModule) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    return (
        a.code == b.code
        and state_a.keys() == state_b.keys()
        and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    )


def test_model_files_carry_a_checksum_that_every_corruption_breaks(tmp_path):
    path = export_simple_proposal(Shift(), tmp_path / "m.pt", num_atoms=3)
    content = path.read_bytes()
    original, _ = load_model(path)
    rng = random.Random(0)
    refused = 0
    for trial in range(100):
        damaged = bytearray(content)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        corrupt = tmp_path / f"corrupt{trial}.pt"
        corrupt.write_bytes(bytes(damaged))
        try:
            module, _ = load_model(corrupt)
        except ValueError as error:
            assert str(corrupt) in str(error)
            refused += 1
            continue
        # A byte no reader uses (zip padding, a local header's version field, the archive id):
        # what loads is exactly the model that was written.
        assert _same_module(module, original)
    assert refused >= 50  # most bytes are content
    for length in (0, 10, len(content) // 3, len(content) - 10):
        truncated = tmp_path / f"truncated{length}.pt"
        truncated.write_bytes(content[:length])
        with pytest.raises(ValueError, match=str(truncated)):
            load_model(truncated)


def test_files_without_a_checksum_are_refused_until_resaved(tmp_path):
    path = tmp_path / "old.pt"
    torch.jit.save(
        torch.jit.script(Shift()),
        str(path),
        _extra_files={"timewarp.json": simple_metadata(3).to_json()},
    )
    with pytest.raises(ValueError, match=r"has no checksum.*timewarp resave"):
        load_model(path)
    assert main(["resave", str(path)]) == 0
    module, _ = load_model(path)
    positions = torch.zeros(3, 3)
    proposals, _ = module(positions, torch.zeros(3, dtype=torch.int64), torch.zeros(1, 3, 1))
    torch.testing.assert_close(proposals[0], positions + 0.01)


def test_non_finite_weights_are_never_written(tmp_path):
    model = Shift()
    with torch.no_grad():
        model.shift[1] = float("nan")
    with pytest.raises(ValueError, match="non-finite values in proposal.shift"):
        export_simple_proposal(model, tmp_path / "nan.pt", num_atoms=3)
    assert not (tmp_path / "nan.pt").exists()


def test_resave_is_the_identity_on_a_checksummed_file(tmp_path):
    path = export_simple_proposal(GaussianRandomWalk(0.1), tmp_path / "walk.pt")
    target = resave(path, tmp_path / "copy.pt")
    assert load_metadata(target) == load_metadata(path)
    with __import__("zipfile").ZipFile(target) as archive:
        assert any(name.endswith(CHECKSUM_FILE) for name in archive.namelist())


# The transferable model's cache: private, verified, rebuilt.


def _dipeptide_topology() -> app.Topology:
    return app.PDBFile(str(EXAMPLE_PDB)).topology


def test_cache_entries_are_verified_and_rebuilt(tmp_path, monkeypatch):
    from openmm_timewarp.models.resolve import model_file_for_topology

    cache = tmp_path / "cache"
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(cache))
    topology = _dipeptide_topology()
    built = model_file_for_topology("dipeptides", topology)
    assert built.parent == cache and stat.S_IMODE(cache.stat().st_mode) == 0o700
    original = built.read_bytes()
    # A planted file with the (predictable) name, with a valid embedded checksum of its own.
    export_simple_proposal(Shift(), built, num_atoms=topology.getNumAtoms())
    assert model_file_for_topology("dipeptides", topology) == built
    assert load_metadata(built).family == "ic-rotor" and built.read_bytes() == original
    built.write_bytes(original[:1000])  # a corrupt entry
    assert model_file_for_topology("dipeptides", topology) == built
    assert built.read_bytes() == original


def test_a_cache_folder_others_can_write_is_refused(tmp_path, monkeypatch):
    from openmm_timewarp.models.resolve import model_file_for_topology

    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(cache))
    with pytest.raises(ValueError, match="not private to you"):
        model_file_for_topology("dipeptides", _dipeptide_topology())


# Topologies whose names contradict their elements.


def test_an_atom_name_swap_is_refused(tmp_path):
    pdb = app.PDBFile(str(EXAMPLE_PDB))
    metadata = load_metadata("alanine-dipeptide")
    atoms = {atom.name: atom for atom in list(pdb.topology.residues())[1].atoms()}
    atoms["N"].name, atoms["CA"].name = "CA", "N"
    with pytest.raises(ValueError, match="names do not fit their elements.*1:ALA:CA is N"):
        atom_types_for_topology(pdb.topology, metadata)


def test_a_non_positive_exploration_threshold_is_refused(tmp_path):
    path = export_simple_proposal(GaussianRandomWalk(0.1), tmp_path / "walk.pt")
    for threshold in (-1.0, 0.0):
        with pytest.raises(openmm.OpenMMException, match="positive finite energy"):
            TimewarpIntegrator(
                path, 300, atom_types=[0], exploration=True, exploration_threshold=threshold
            )


# Many chains: the same warning.


def test_the_many_chain_sampler_warns_when_all_proposals_are_non_finite(tmp_path):
    from openmm_timewarp.sampling.chains import ChainSampler, ChainSpec

    path = export_simple_proposal(NonFinite(), tmp_path / "nan.pt", atom_types=("H", "C", "N", "O"))
    pdb = app.PDBFile(str(EXAMPLE_PDB))
    system = app.ForceField("amber14-all.xml", "implicit/obc2.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None
    )
    replace_custom_gb_with_gbsaobc(system)
    positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    spec = ChainSpec("nan", system, pdb.topology, positions, path, 1)
    sampler = ChainSampler([spec], tmp_path / "out", max_proposals=8)
    with pytest.warns(RuntimeWarning, match="chain nan: all .* non-finite"):
        sampler.run(16)


def test_warning_tests_see_one_warning(tmp_path):
    path = export_simple_proposal(NonFinite(), tmp_path / "nan.pt")
    integrator = TimewarpIntegrator(path, 300, atom_types=[0] * 3, max_proposal_batch=4)
    context = openmm.Context(tethered_particles(3), integrator, REFERENCE)
    context.setPositions(np.eye(3) * 0.1)
    with pytest.warns(RuntimeWarning) as record:
        for _ in range(5):
            integrator.step(12)
    assert len(record) == 1


# Processes: interrupted commands.


def test_ctrl_c_prints_no_traceback(monkeypatch, capsys):
    import openmm_timewarp.cli as cli
    import openmm_timewarp.cli.resave as resave_command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(resave_command, "_resave", interrupted)
    assert cli.main(["resave", "x.pt"]) == 130
    assert "interrupted; run the same command again to resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--length-ns", "0"], "--length-ns: must be a positive number"),
        (["--length-ns", "nan"], "--length-ns: must be a finite number"),
        (["--length-ns", "1", "--start=nan,40"], "PHI,PSI in degrees \\(finite numbers\\)"),
        (["--length-ns", "1e-9"], "shorter than one frame"),
    ],
)
def test_simulate_refuses_bad_numbers_in_its_own_words(arguments, message, tmp_path, capsys):
    try:
        code = main(["simulate", "A", *arguments, "-o", str(tmp_path / "out")])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_failed_train_leaves_no_empty_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    output = tmp_path / "runs" / "new"
    code = main(["train", "--family", "ic-independent", str(data), "-o", str(output)])
    assert code == 2
    assert not output.exists()


def test_a_damaged_log_is_named(tmp_path):
    output = tmp_path / "run"
    _train_small(output)
    (output / "log.csv").write_text("step,loss\nnot-a-step,1\n")
    with pytest.raises(ValueError, match=f"{output / 'log.csv'} is damaged"):
        _train_small(output)


# MD data: exact resume in a new process, `info` checks the DCD.

_MD_SCRIPT = """
import sys
from openmm_timewarp.data.md import RunSettings, TrajectoryRun
settings = RunSettings("A", frame_interval_steps=200, num_frames=int(sys.argv[2]),
                       equilibration_ps=0.05, seed=7)
TrajectoryRun(sys.argv[1], settings).run(checkpoint_interval_frames=2, show_progress=False)
"""


def _final_state(folder: Path, frames: int) -> np.ndarray:
    from openmm_timewarp.data.md import SYSTEM_FILE

    system = openmm.XmlSerializer.deserialize((folder / SYSTEM_FILE).read_text())
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), REFERENCE)
    context.loadCheckpoint((folder / f"checkpoint-{frames:09d}.chk").read_bytes())
    state = context.getState(getPositions=True, getVelocities=True)
    return np.concatenate(
        [state.getPositions(asNumpy=True)._value, state.getVelocities(asNumpy=True)._value]
    )


def _md_process(folder: Path, frames: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _MD_SCRIPT, str(folder), str(frames)])


@pytest.mark.slow
def test_md_resumes_bit_for_bit_after_a_kill_in_a_new_process(tmp_path):
    import mdtraj

    from openmm_timewarp.data.md import PROGRESS_FILE, RunSettings, TrajectoryRun

    frames = 40
    straight = tmp_path / "straight"
    assert _md_process(straight, frames).wait(timeout=300) == 0
    # The run is killed (SIGKILL) once it has committed a few frames, then resumed twice more.
    killed = tmp_path / "killed"
    for stop in (4, 20):
        process = _md_process(killed, frames)
        try:
            while not (killed / PROGRESS_FILE).exists() or (
                TrajectoryRun(killed, RunSettings("A")).frames_done() < stop
            ):
                assert process.poll() is None, "the run ended before it could be killed"
        finally:
            process.kill()
            process.wait()
    assert _md_process(killed, frames).wait(timeout=300) == 0
    expected = mdtraj.load(straight / "trajectory.dcd", top=str(straight / "topology.pdb"))
    resumed = mdtraj.load(killed / "trajectory.dcd", top=str(killed / "topology.pdb"))
    assert resumed.n_frames == expected.n_frames == frames
    np.testing.assert_array_equal(resumed.xyz, expected.xyz)
    # The final states, in double precision (the DCD rounds to float32).
    states = [_final_state(folder, frames) for folder in (straight, killed)]
    np.testing.assert_array_equal(states[0], states[1])
    with mdtraj.formats.DCDTrajectoryFile(str(killed / "trajectory.dcd")) as handle:
        assert handle.read(n_frames=1)  # readable
    header = (killed / "trajectory.dcd").read_bytes()[:24]
    straight_header = (straight / "trajectory.dcd").read_bytes()[:24]
    assert header == straight_header  # frame count and last step as an uninterrupted run


def test_info_checks_the_trajectory_on_disk(tmp_path, capsys):
    from openmm_timewarp.data.md import RunSettings, TrajectoryRun

    folder = tmp_path / "data" / "00-extended"
    settings = RunSettings("A", frame_interval_steps=20, num_frames=6, equilibration_ps=0.01)
    TrajectoryRun(folder, settings).run(checkpoint_interval_frames=3, show_progress=False)
    assert main(["info", str(tmp_path / "data")]) == 0
    assert "6/6 frames" in capsys.readouterr().out
    trajectory = folder / "trajectory.dcd"
    content = trajectory.read_bytes()
    trajectory.write_bytes(content[: len(content) - 100])
    assert main(["info", str(tmp_path / "data")]) == 2
    assert "holds 5 frames but" in capsys.readouterr().err
    (folder / "progress.json").write_text("{broken")
    assert main(["info", str(tmp_path / "data")]) == 2
    assert f"{folder / 'progress.json'} is unreadable" in capsys.readouterr().err


def test_a_resumed_dcd_header_names_the_last_step(tmp_path):
    from openmm_timewarp.data.md import RunSettings, TrajectoryRun

    settings = RunSettings("A", frame_interval_steps=20, num_frames=3, equilibration_ps=0.01)
    TrajectoryRun(tmp_path, settings).run(checkpoint_interval_frames=2, stop_at_frames=2)
    TrajectoryRun(tmp_path, settings).run(checkpoint_interval_frames=2)
    header = np.frombuffer((tmp_path / "trajectory.dcd").read_bytes()[:24], dtype="<i4")
    # count, first step, interval, last step (DCDFile's layout after its 4-byte record marker)
    assert (header[2], header[3], header[4], header[5]) == (3, 20, 20, 60)


def test_a_resumed_md_run_uses_the_system_it_started_with(tmp_path):
    from openmm_timewarp.data.md import SYSTEM_FILE, RunSettings, TrajectoryRun

    settings = RunSettings("A", frame_interval_steps=20, num_frames=2, equilibration_ps=0.01)
    TrajectoryRun(tmp_path, settings).run(checkpoint_interval_frames=1, stop_at_frames=1)
    system = openmm.XmlSerializer.deserialize((tmp_path / SYSTEM_FILE).read_text())
    assert system.getNumParticles() == 22
    (tmp_path / SYSTEM_FILE).write_text("<System garbage")
    from openmm_timewarp.data.md import CheckpointError

    with pytest.raises(CheckpointError, match=f"{tmp_path / SYSTEM_FILE} is unreadable"):
        TrajectoryRun(tmp_path, settings).run(checkpoint_interval_frames=1)


def test_the_cache_default_folder_is_private(tmp_path, monkeypatch):
    from openmm_timewarp.models.resolve import _cache_dir

    monkeypatch.delenv("OPENMM_TIMEWARP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = _cache_dir()
    assert folder == tmp_path / "xdg" / "openmm-timewarp"
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    assert os.stat(folder).st_uid == os.getuid()


def test_save_module_keeps_simple_metadata(tmp_path):
    path = save_module(Shift(), tmp_path / "s.pt", simple_metadata())
    assert load_metadata(path) == simple_metadata()


# Context checkpoints (Simulation.saveCheckpoint): the model and the bytes are checked.


def _walk_context(model: Path) -> tuple[TimewarpIntegrator, openmm.Context]:
    integrator = TimewarpIntegrator(model, 300, atom_types=[0] * 3, seed=1)
    context = openmm.Context(tethered_particles(3), integrator, REFERENCE)
    context.setPositions(np.eye(3) * 0.1)
    return integrator, context


def test_a_context_checkpoint_of_another_model_is_refused(tmp_path):
    first = export_simple_proposal(GaussianRandomWalk(0.05), tmp_path / "a.pt")
    second = export_simple_proposal(GaussianRandomWalk(0.1), tmp_path / "b.pt")
    integrator, context = _walk_context(first)
    integrator.step(10)
    checkpoint = context.createCheckpoint()
    other, other_context = _walk_context(second)
    with pytest.raises(openmm.OpenMMException, match="written with another proposal model"):
        other_context.loadCheckpoint(checkpoint)
    assert other.getNumSteps() == 0
    _walk_context(first)[1].loadCheckpoint(checkpoint)  # the same model's file loads


def test_every_truncated_context_checkpoint_is_refused_clearly(tmp_path):
    model = export_simple_proposal(GaussianRandomWalk(0.05), tmp_path / "a.pt")
    integrator, context = _walk_context(model)
    integrator.step(10)
    checkpoint = context.createCheckpoint()
    _, fresh = _walk_context(model)
    for length in range(0, len(checkpoint), max(1, len(checkpoint) // 80)):
        with pytest.raises(openmm.OpenMMException, match="Checkpoint header|truncated or corrupt"):
            fresh.loadCheckpoint(checkpoint[:length])


class _HasComponentNamedIndependent(torch.nn.Module):
    """Like ``ICMixtureProposal``: an attribute ``independent`` that is a module, not a bool."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim: int = 1
        self.independent = torch.nn.Identity()

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return positions.unsqueeze(0) + 0.1 * noise, torch.zeros(noise.shape[0])


def test_only_a_bool_declares_independence(tmp_path):
    path = export_simple_proposal(_HasComponentNamedIndependent(), tmp_path / "m.pt")
    module, _ = load_model(path)
    assert module.independent is False
