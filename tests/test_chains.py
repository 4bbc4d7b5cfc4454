"""Many-chain sampling: forward_chains of every proposal family, per-chain reproducibility,
resume after an interruption, Boltzmann exactness, and refusal of models without forward_chains."""

import json

import mdtraj
import numpy as np
import pytest
import torch
from helpers import (
    BURN_IN,
    DOUBLE_WELL_PROPOSALS,
    DOUBLE_WELL_START,
    HARMONIC_CENTRES,
    HARMONIC_PROPOSALS,
    TEMPERATURE,
    THIN,
    DeclaredIndependent,
    SignFlipped,
    analytic_cases,
    compare,
    double_well_observables,
    double_well_system,
    harmonic_observables,
    harmonic_system,
    save_without_checks,
)
from openmm import app, unit
from test_flow import NUM_ATOM_TYPES, make_inputs
from test_flow import make_model as make_flow
from test_ic_proposals import make_models as make_ic_models
from test_ic_proposals import positions_of

from openmm_timewarp.checkpoints import load_checkpoint
from openmm_timewarp.cli import main as cli_main
from openmm_timewarp.data.dcd import count_dcd_frames
from openmm_timewarp.data.peptides import FORCEFIELD_NAME, build_peptide, create_system
from openmm_timewarp.models.contract import (
    ModelMetadata,
    atom_types_for_topology,
    export,
    load_metadata,
    load_model,
    save_module,
)
from openmm_timewarp.proposals.ic.families import proposal_metadata
from openmm_timewarp.proposals.simple import (
    DriftedGaussianWalk,
    GaussianRandomWalk,
    IndependentGaussian,
    export_simple_proposal,
)
from openmm_timewarp.sampling.chains import ChainSampler, ChainSpec
from openmm_timewarp.sampling.diagnostics import STUCK_AFTER_PROPOSALS, StuckChainWarning
from openmm_timewarp.sampling.ranks import chain_seed, chains_for_rank, process_rank

torch.set_num_threads(1)

ELEMENTS = ("H", "C", "N", "O", "S")
# A third of the integrator tests' chain length: the runner's Python loop is slower, and a flipped
# logQRatio is still off by tens of standard errors.
EXACTNESS_STEPS = 10_000
COUNTERS = (
    "steps",
    "proposals",
    "accepted",
    "rejected_non_finite",
    "rejected_chirality",
    "model_calls",
    "frames",
)


@pytest.fixture(scope="module")
def dipeptide() -> app.Modeller:
    return build_peptide("A")


@pytest.fixture(scope="module")
def glycine() -> app.Modeller:
    return build_peptide("G")


def assert_chains_match_forward(module, positions, atom_types, noise, atol=1e-5) -> None:
    """``forward_chains`` equals ``forward`` called once per chain."""
    with torch.no_grad():
        proposals, log_q_ratio = module.forward_chains(positions, atom_types, noise)
        for chain in range(positions.shape[0]):
            expected_proposals, expected_ratio = module(positions[chain], atom_types, noise[chain])
            torch.testing.assert_close(proposals[chain], expected_proposals, rtol=0, atol=atol)
            torch.testing.assert_close(log_q_ratio[chain], expected_ratio, rtol=1e-5, atol=1e-3)
    assert proposals.shape == (*noise.shape[:3], 3)
    assert log_q_ratio.shape == noise.shape[:2]


def chain_inputs(positions: torch.Tensor, noise_dim: int, chains=3, proposals=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    num_atoms = positions.shape[0]
    states = positions + 0.002 * torch.randn(chains, num_atoms, 3, generator=generator)
    noise = torch.randn(chains, proposals, num_atoms, noise_dim, generator=generator)
    return states.to(positions.dtype), noise.to(positions.dtype)


@pytest.mark.parametrize("family", ["conditional", "independent", "mixture"])
def test_ic_forward_chains_is_stacked_forward(family, dipeptide, tmp_path):
    model = make_ic_models(dipeptide)[family].eval()
    x = positions_of(dipeptide).float()
    metadata = proposal_metadata(model, "ad", 1.0, 310.0, FORCEFIELD_NAME)
    atom_types = torch.from_numpy(atom_types_for_topology(dipeptide.topology, metadata))
    states, noise = chain_inputs(x, model.noise_dim, proposals=8)
    assert_chains_match_forward(model, states, atom_types, noise)
    # The exported file (export checks forward_chains against forward itself).
    export(model, tmp_path / "m.pt", metadata, example_positions=x)
    module, _ = load_model(tmp_path / "m.pt")
    assert_chains_match_forward(module, states, atom_types, noise)


def test_flow_forward_chains_is_stacked_forward(tmp_path):
    model = make_flow(torch.float32)
    positions, atom_types, _ = make_inputs(dtype=torch.float32)
    states, noise = chain_inputs(positions, model.noise_dim)
    assert_chains_match_forward(model, states, atom_types, noise)
    # One chain takes the shared-conditioning path: the same as forward as well.
    assert_chains_match_forward(model, states[:1], atom_types, noise[:1])
    metadata = ModelMetadata(
        "flow", "timewarp-flow", 1.0, 310.0, "any", "element", list(ELEMENTS[:NUM_ATOM_TYPES])
    )
    export(model, tmp_path / "flow.pt", metadata, example_positions=positions)
    module, _ = load_model(tmp_path / "flow.pt")
    assert_chains_match_forward(module, states, atom_types, noise)


SIMPLE_PROPOSALS = {
    "random walk": lambda: GaussianRandomWalk(0.05),
    "independent Gaussian": lambda: IndependentGaussian(0.1, [0.1, 0.2, 0.3] * 4),
    "drifted walk": lambda: DriftedGaussianWalk(0.05, [0.01, 0.0, -0.02]),
}


@pytest.mark.parametrize("proposal", list(SIMPLE_PROPOSALS))
def test_simple_forward_chains_is_stacked_forward(proposal, tmp_path):
    model = SIMPLE_PROPOSALS[proposal]()
    states, noise = chain_inputs(torch.rand(4, 3), model.noise_dim)
    atom_types = torch.zeros(4, dtype=torch.int64)
    assert_chains_match_forward(model, states, atom_types, noise, atol=0.0)
    module, _ = load_model(export_simple_proposal(model, tmp_path / "m.pt", num_atoms=4))
    assert_chains_match_forward(module, states, atom_types, noise, atol=0.0)


def test_a_module_without_forward_chains_gets_one_forward_per_chain(tmp_path):
    model = SignFlipped(IndependentGaussian(0.1, [0.1, 0.2, 0.3] * 4))
    assert not hasattr(model, "forward_chains")
    module, _ = load_model(export_simple_proposal(model, tmp_path / "m.pt", num_atoms=4))
    states, noise = chain_inputs(torch.rand(4, 3), model.noise_dim)
    assert_chains_match_forward(module, states, torch.zeros(4, dtype=torch.int64), noise)


class InconsistentChains(torch.nn.Module):
    """A random walk whose forward_chains swaps the chains' noise: must be caught at export."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim = 3

    def forward(self, positions, atom_types, noise):
        return positions + 0.05 * noise, torch.zeros(noise.shape[0])

    def forward_chains(self, positions, atom_types, noise):
        proposals = positions.unsqueeze(1) + 0.05 * noise.flip(0)
        return proposals, torch.zeros(noise.shape[:2])


def test_export_refuses_forward_chains_that_disagrees_with_forward(tmp_path):
    with pytest.raises(ValueError, match="forward_chains disagrees with forward"):
        export_simple_proposal(InconsistentChains(), tmp_path / "m.pt", num_atoms=3)


def peptide_spec(name, modeller, model, seed, atom_types=None) -> ChainSpec:
    return ChainSpec(
        name=name,
        system=create_system(modeller.topology),
        topology=modeller.topology,
        positions=np.array(modeller.positions.value_in_unit(unit.nanometer)),
        model=model,
        seed=seed,
        atom_types=atom_types,
    )


def chain_record(folder) -> tuple[dict, np.ndarray]:
    """A chain's counters and its trajectory (nm)."""
    statistics = json.loads((folder / "statistics.json").read_text())
    trajectory = mdtraj.load(str(folder / "trajectory.dcd"), top=str(folder / "topology.pdb"))
    return {key: statistics[key] for key in COUNTERS}, trajectory.xyz


@pytest.fixture(scope="module")
def mixed_specs(dipeptide, glycine, tmp_path_factory) -> list[ChainSpec]:
    """Alanine dipeptide with a random walk (2 chains) and an IC model (2 chains), glycine
    dipeptide with the same random-walk file (2 chains): three groups."""
    folder = tmp_path_factory.mktemp("models")
    walk = export_simple_proposal(
        GaussianRandomWalk(0.0005), folder / "walk.pt", atom_types=ELEMENTS, temperature_K=310.0
    )
    ic_model = make_ic_models(dipeptide)["mixture"].eval()
    ic = export(
        ic_model,
        folder / "ic.pt",
        proposal_metadata(ic_model, "ad", 1.0, 310.0, FORCEFIELD_NAME),
        example_positions=positions_of(dipeptide).float(),
    )
    specs = []
    for index, (modeller, model) in enumerate(
        [(dipeptide, walk), (dipeptide, ic), (glycine, walk)] * 2
    ):
        specs.append(peptide_spec(f"chain-{index}", modeller, model, chain_seed(5, index)))
    return specs


def test_chains_together_match_chains_alone(mixed_specs, tmp_path):
    steps = 120
    together = ChainSampler(mixed_specs, tmp_path / "together", trajectory_interval=5)
    assert len(together.groups) == 3
    together.run(steps)
    for spec in mixed_specs:
        ChainSampler([spec], tmp_path / "alone", trajectory_interval=5).run(steps)
    accepted = 0
    for spec in mixed_specs:
        counters, frames = chain_record(tmp_path / "together" / spec.name)
        alone_counters, alone_frames = chain_record(tmp_path / "alone" / spec.name)
        assert counters == alone_counters
        assert counters["steps"] == steps and counters["frames"] == steps // 5
        np.testing.assert_allclose(frames, alone_frames, rtol=0, atol=1e-5)
        accepted += counters["accepted"]
    assert accepted > 0


def test_ranks_split_chains_and_reproduce_them(mixed_specs, tmp_path):
    steps = 60
    ChainSampler(mixed_specs, tmp_path / "one", trajectory_interval=5).run(steps)
    for rank in range(2):
        mine = chains_for_rank(mixed_specs, rank, 2)
        assert [spec.name for spec in mine] == [s.name for s in mixed_specs[rank::2]]
        ChainSampler(mine, tmp_path / "two", trajectory_interval=5).run(steps)
    for spec in mixed_specs:
        counters, frames = chain_record(tmp_path / "one" / spec.name)
        assert chain_record(tmp_path / "two" / spec.name)[0] == counters
        np.testing.assert_allclose(chain_record(tmp_path / "two" / spec.name)[1], frames, atol=1e-5)


def test_process_rank_reads_the_launchers():
    assert process_rank({}) == (0, 1)
    assert process_rank({"RANK": "3", "WORLD_SIZE": "4", "SLURM_PROCID": "0"}) == (3, 4)
    array = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert process_rank(array) == (2, 4)
    assert process_rank({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}) == (1, 2)
    with pytest.raises(ValueError, match="impossible"):
        process_rank({"RANK": "4", "WORLD_SIZE": "4"})


def test_interrupted_run_resumes_without_losing_or_duplicating_frames(
    mixed_specs, tmp_path, monkeypatch
):
    specs = mixed_specs[:3]
    steps, settings = 150, dict(trajectory_interval=3, checkpoint_interval=40)
    ChainSampler(specs, tmp_path / "straight", **settings).run(steps)

    rounds = 0
    original_round = ChainSampler._round

    def interrupted_round(self, group, active, target):
        nonlocal rounds
        rounds += 1
        if rounds > 60:
            raise KeyboardInterrupt
        original_round(self, group, active, target)

    monkeypatch.setattr(ChainSampler, "_round", interrupted_round)
    with pytest.raises(KeyboardInterrupt):
        ChainSampler(specs, tmp_path / "resumed", **settings).run(steps)
    monkeypatch.setattr(ChainSampler, "_round", original_round)
    # The interruption left frames after the last checkpoint (the case that needs cutting).
    folder = tmp_path / "resumed" / specs[0].name
    checkpoint = load_checkpoint(folder / "checkpoint.pt")
    written = count_dcd_frames(folder / "trajectory.dcd", specs[0].topology.getNumAtoms())
    assert 0 < checkpoint["statistics"]["steps"] < steps
    assert written > checkpoint["statistics"]["frames"]

    ChainSampler(specs, tmp_path / "resumed", **settings).run(steps)
    for spec in specs:
        counters, frames = chain_record(tmp_path / "straight" / spec.name)
        resumed_counters, resumed_frames = chain_record(tmp_path / "resumed" / spec.name)
        assert resumed_counters == counters
        np.testing.assert_array_equal(resumed_frames, frames)


def test_resume_refuses_other_settings(mixed_specs, tmp_path):
    spec = mixed_specs[0]
    ChainSampler([spec], tmp_path, trajectory_interval=5).run(10)
    other = ChainSpec(**{**spec.__dict__, "seed": spec.seed + 1})
    with pytest.raises(ValueError, match="another seed"):
        ChainSampler([other], tmp_path, trajectory_interval=5).run(20)
    with pytest.raises(ValueError, match="trajectory interval"):
        ChainSampler([spec], tmp_path, trajectory_interval=2).run(20)
    (tmp_path / spec.name / "trajectory.dcd").unlink()
    with pytest.raises(ValueError, match="cannot be resumed"):
        ChainSampler([spec], tmp_path, trajectory_interval=5).run(20)


def particle_topology(num_atoms: int) -> app.Topology:
    topology = app.Topology()
    residue = topology.addResidue("X", topology.addChain())
    for index in range(num_atoms):
        topology.addAtom(f"C{index}", app.element.carbon, residue)
    return topology


def analytic_samples(
    system, start, model_path, folder, seed, num_chains=1, steps=EXACTNESS_STEPS
) -> np.ndarray:
    """Positions every THIN steps after BURN_IN of ``num_chains`` chains run together by
    ChainSampler, chain after chain: ``[samples, atoms, 3]``."""
    specs = [
        ChainSpec(
            name=f"chain-{index}",
            system=system,
            topology=particle_topology(len(start)),
            positions=start,
            model=model_path,
            seed=chain_seed(seed, index),
            atom_types=[0] * len(start),
            chiral_centres=[],
        )
        for index in range(num_chains)
    ]
    sampler = ChainSampler(specs, folder, temperature=TEMPERATURE, trajectory_interval=THIN)
    independent = sampler.groups[0].independent
    samples = []
    for spec, statistics in zip(specs, sampler.run(BURN_IN + steps), strict=True):
        assert 0.05 < statistics.acceptance_rate < 0.95
        if independent:  # batches survive acceptances: full batches only
            assert statistics.model_calls <= statistics.proposals // sampler.max_proposals + 1
        else:
            assert statistics.model_calls > statistics.accepted
        chain_folder = folder / spec.name
        trajectory = mdtraj.load(
            str(chain_folder / "trajectory.dcd"), top=str(chain_folder / "topology.pdb")
        )
        samples.append(trajectory.xyz[BURN_IN // THIN :].astype(np.float64))
    return np.concatenate(samples)


def test_harmonic_check_fails_when_a_walk_declares_itself_independent(tmp_path):
    proposal = DeclaredIndependent(HARMONIC_PROPOSALS["random walk"]())
    with pytest.raises(ValueError, match="declares itself independent"):
        export_simple_proposal(proposal, tmp_path / "m.pt", num_atoms=2)
    path = save_without_checks(proposal, tmp_path / "m.pt", num_atoms=2)
    samples = analytic_samples(harmonic_system(), HARMONIC_CENTRES, path, tmp_path, seed=21)
    assert compare(harmonic_observables(samples)) != []


@pytest.mark.parametrize("flipped", [False, True], ids=["exact", "flipped logQRatio"])
def test_harmonic_array_is_sampled_exactly(flipped, tmp_path):
    proposal = HARMONIC_PROPOSALS["independent Gaussian"]()
    proposal = SignFlipped(proposal) if flipped else proposal
    path = export_simple_proposal(proposal, tmp_path / "m.pt", num_atoms=2)
    samples = analytic_samples(harmonic_system(), HARMONIC_CENTRES, path, tmp_path, seed=21)
    failures = compare(harmonic_observables(samples))
    assert (failures != []) == flipped


@pytest.mark.parametrize("flipped", [False, True], ids=["exact", "flipped logQRatio"])
def test_double_well_is_sampled_exactly(flipped, tmp_path):
    proposal = DOUBLE_WELL_PROPOSALS["drifted walk"]()
    proposal = SignFlipped(proposal) if flipped else proposal
    path = export_simple_proposal(proposal, tmp_path / "m.pt")
    samples = analytic_samples(double_well_system(), DOUBLE_WELL_START, path, tmp_path, seed=22)
    failures = compare(double_well_observables(samples))
    assert (failures != []) == flipped


@pytest.mark.slow
def test_many_chains_of_every_analytic_case_are_exact(tmp_path):
    """Three chains of each proposal of the integrator's exactness tests, 30,000 steps each, in
    one sampler per case; the pooled averages must match the exact ones."""
    failures = []
    for index, (make_system, proposal, start, observables, num_atoms) in enumerate(
        analytic_cases()
    ):
        path = export_simple_proposal(proposal(), tmp_path / f"{index}.pt", num_atoms=num_atoms)
        samples = analytic_samples(
            make_system(), start, path, tmp_path / str(index), 30 + index, 3, 3 * EXACTNESS_STEPS
        )
        failures += compare(observables(samples))
    assert failures == []


class ForwardOnly(torch.nn.Module):
    """A model file as written before forward_chains existed."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_dim = 3
        self.tau = 1.0
        self.num_atoms = 0
        self.num_atom_types = len(ELEMENTS)

    def forward(self, positions, atom_types, noise):
        return positions + 0.001 * noise, torch.zeros(noise.shape[0])


def test_a_model_without_forward_chains_is_refused(dipeptide, tmp_path):
    metadata = ModelMetadata("old", "simple", 1.0, 310.0, "any", "element", list(ELEMENTS))
    save_module(ForwardOnly(), tmp_path / "old.pt", metadata)
    assert load_metadata(tmp_path / "old.pt").name == "old"
    spec = peptide_spec("chain", dipeptide, tmp_path / "old.pt", 1)
    with pytest.raises(ValueError, match="no forward_chains.*re-export"):
        ChainSampler([spec], tmp_path / "out")


def test_bad_inputs_are_refused(mixed_specs, tmp_path):
    spec = mixed_specs[0]
    with pytest.raises(ValueError, match="its own name"):
        ChainSampler([spec, spec], tmp_path)
    with pytest.raises(ValueError, match="trajectory_interval"):
        ChainSampler([spec], tmp_path, trajectory_interval=0)
    with pytest.raises(ValueError, match="compiled for the CPU"):
        ChainSampler([spec], tmp_path, device="cuda", compiled=True)
    two_atoms = export_simple_proposal(
        GaussianRandomWalk(0.01), tmp_path / "two.pt", num_atoms=2, atom_types=ELEMENTS
    )
    with pytest.raises(ValueError, match="is for 2 atoms"):
        ChainSampler([ChainSpec(**{**spec.__dict__, "model": two_atoms})], tmp_path)
    constrained = create_system(build_peptide("A").topology)
    constrained.addConstraint(0, 1, 0.1)
    with pytest.raises(ValueError, match="constraints"):
        ChainSampler([ChainSpec(**{**spec.__dict__, "system": constrained})], tmp_path)


def test_chirality_inverting_proposals_are_rejected_and_counted(dipeptide, tmp_path):
    """A model that mirrors the molecule through a plane: every proposal inverts the CA."""
    path = export_simple_proposal(GaussianRandomWalk(0.001), tmp_path / "m.pt", atom_types=ELEMENTS)
    positions = np.array(dipeptide.positions.value_in_unit(unit.nanometer))
    spec = peptide_spec("chain", dipeptide, path, 3)
    sampler = ChainSampler([spec], tmp_path / "out", trajectory_interval=1)
    chain = sampler.chains[0]
    chain.open()
    mirrored = positions * np.array([1.0, 1.0, -1.0])
    chain.walk(np.stack([mirrored, positions]), np.zeros(2), independent=False)
    chain.close()
    assert chain.statistics.rejected_chirality == 1
    assert chain.statistics.accepted == 1


def test_timewarp_sample_command(tmp_path, dipeptide, capsys):
    walk = export_simple_proposal(
        GaussianRandomWalk(0.0005), tmp_path / "walk.pt", atom_types=ELEMENTS, temperature_K=310.0
    )
    pdb = tmp_path / "ad.pdb"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(dipeptide.topology, dipeptide.positions, handle)
    arguments = ["sample", str(walk), str(pdb), "G", "--chains-per-peptide", "2", "--steps", "40"]
    arguments += ["--trajectory-interval", "10", "--no-progress", "-o", str(tmp_path / "out")]
    assert cli_main(arguments) == 0
    folders = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert folders == ["0000-ad", "0001-ad", "0002-G", "0003-G"]
    for folder in folders:
        counters, frames = chain_record(tmp_path / "out" / folder)
        assert counters["steps"] == 40 and frames.shape[0] == 4
    # Again: the chains are complete, nothing changes; the models run on one torch thread unless
    # asked (more oversubscribe a busy CPU).
    torch.set_num_threads(2)
    assert cli_main(arguments) == 0
    assert chain_record(tmp_path / "out" / folders[0])[0]["steps"] == 40
    assert torch.get_num_threads() == 1
    assert cli_main([*arguments, "--torch-threads", "0"]) == 2
    assert "--torch-threads must be at least 1" in capsys.readouterr().err


def test_chain_seeds_are_distinct_and_stable():
    seeds = [chain_seed(1, index) for index in range(1000)]
    assert len(set(seeds)) == 1000
    assert chain_seed(1, 7) == chain_seed(1, 7) != chain_seed(2, 7)
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_sample_command_runs_on_a_system_file(tmp_path, dipeptide, capsys):
    """``--system`` replaces the built-in force field: on a System without forces every
    symmetric random-walk proposal is accepted (barring chirality), on amber14 hardly any."""
    import openmm

    walk = export_simple_proposal(
        GaussianRandomWalk(0.05), tmp_path / "walk.pt", atom_types=ELEMENTS, temperature_K=310.0
    )
    pdb = tmp_path / "ad.pdb"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(dipeptide.topology, dipeptide.positions, handle)
    free = openmm.System()
    for atom in dipeptide.topology.atoms():
        free.addParticle(atom.element.mass)
    free_file = tmp_path / "free.xml"
    free_file.write_text(openmm.XmlSerializer.serialize(free))
    common = [str(walk), str(pdb), "--steps", "40", "--no-progress"]
    assert cli_main(["sample", *common, "--system", str(free_file), "-o", str(tmp_path / "f")]) == 0
    assert cli_main(["sample", *common, "-o", str(tmp_path / "amber")]) == 0
    free_counters, amber_counters = (
        json.loads((tmp_path / run / "0000-ad" / "statistics.json").read_text())
        for run in ("f", "amber")
    )
    assert free_counters["accepted"] + free_counters["rejected_chirality"] == 40
    assert amber_counters["accepted"] < 10
    # Refused: one System for two peptides, a System of other atoms, a file that is no System.
    other = openmm.System()
    other.addParticle(1.0)
    (tmp_path / "other.xml").write_text(openmm.XmlSerializer.serialize(other))
    (tmp_path / "bad.xml").write_text("<System")
    for peptides, system_file, message in [
        ([str(pdb), "G"], free_file, "one peptide"),
        ([str(pdb)], tmp_path / "other.xml", "1 particles but the peptide has 22"),
        ([str(pdb)], tmp_path / "bad.xml", "not a serialized OpenMM System"),
        ([str(pdb)], tmp_path / "missing.xml", "cannot read"),
    ]:
        capsys.readouterr()
        arguments = ["sample", str(walk), *peptides, "--steps", "40", "--system", str(system_file)]
        assert cli_main([*arguments, "-o", str(tmp_path / "refused")]) == 2
        assert message in capsys.readouterr().err


def test_a_chain_that_accepts_nothing_warns_once(tmp_path):
    """A walk of 1,000 nm steps in a harmonic well never accepts: the sampler warns once."""
    path = export_simple_proposal(GaussianRandomWalk(1000.0), tmp_path / "far.pt")
    spec = ChainSpec(
        name="stuck",
        system=harmonic_system(),
        topology=particle_topology(len(HARMONIC_CENTRES)),
        positions=HARMONIC_CENTRES,
        model=path,
        seed=3,
        atom_types=[0] * len(HARMONIC_CENTRES),
        chiral_centres=[],
    )
    sampler = ChainSampler([spec], tmp_path / "chains", temperature=TEMPERATURE)
    with pytest.warns(StuckChainWarning, match="chain stuck accepted none") as caught:
        (statistics,) = sampler.run(STUCK_AFTER_PROPOSALS + 500)
    assert len([w for w in caught if w.category is StuckChainWarning]) == 1
    assert statistics.accepted == 0


def test_sample_command_reports_a_chain_that_accepts_nothing(tmp_path, capsys):
    model = export_simple_proposal(
        GaussianRandomWalk(1000.0),
        tmp_path / "far.pt",
        num_atoms=22,
        temperature_K=310.0,
        atom_types=ELEMENTS,
    )
    arguments = ["sample", str(model), "examples/alanine-dipeptide.pdb", "--no-progress"]
    arguments += ["--steps", str(STUCK_AFTER_PROPOSALS + 100), "-o", str(tmp_path / "out")]
    with pytest.warns(StuckChainWarning):
        assert cli_main(arguments) == 0
    output = capsys.readouterr().out
    assert "acceptance 0.000" in output and "warning: " in output
    assert "accepted none of its first" in output
