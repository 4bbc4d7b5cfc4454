"""Transferable joint-backbone proposals (family ic-backbone): residues, densities, exactness."""

import math

import numpy as np
import openmm
import pytest
import torch
from helpers import SignFlipped
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.peptides import build_peptide, create_system, peptide_atom_vocabulary
from openmm_timewarp.models.files import export
from openmm_timewarp.models.metadata import ModelMetadata
from openmm_timewarp.models.resolve import load_metadata
from openmm_timewarp.proposals.backbone.density import angle_bins, draw_angles, log_density_at
from openmm_timewarp.proposals.backbone.network import BackboneNetwork, save_network
from openmm_timewarp.proposals.backbone.proposal import ICBackboneProposal, backbone_proposal
from openmm_timewarp.proposals.backbone.training import BackboneTrainingModel
from openmm_timewarp.proposals.ic.zmatrix import torsion_angles
from openmm_timewarp.proposals.rotors.densities import rotor_log_density
from openmm_timewarp.training.likelihood import PeptideData, TrainingSettings, train_peptides

torch.set_num_threads(1)

#: Standard errors a statistic may lie from its expectation.
TOLERANCE = 4.0


def random_network(seed: int, scale: float = 0.5, grid: int = 12) -> BackboneNetwork:
    """A network off its uniform initialisation, so densities are far from uniform."""
    torch.manual_seed(seed)
    network = BackboneNetwork(
        len(peptide_atom_vocabulary()), hidden=32, num_bins=8, atom_dim=8, grid=grid
    )
    network.rotors.known_names[:] = True
    with torch.no_grad():
        for layer in (network.head[-1], network.rotors.net[-1]):
            for parameter in layer.parameters():
                parameter.normal_(0.0, scale)
    return network


def positions_of(modeller: app.Modeller) -> torch.Tensor:
    return torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer)))


def permuted(modeller: app.Modeller, seed: int) -> app.Modeller:
    """The same molecule with its residues and the atoms within each in a random order, as
    another tool might write it (OpenMM keeps a residue's atoms together)."""
    rng = np.random.default_rng(seed)
    residues = list(modeller.topology.residues())
    order = []
    for residue_index in rng.permutation(len(residues)):
        atoms = [atom.index for atom in residues[residue_index].atoms()]
        order += [atoms[i] for i in rng.permutation(len(atoms))]
    atoms = list(modeller.topology.atoms())
    topology = app.Topology()
    chain = topology.addChain()
    new_residues = {}
    new_atoms = {}
    for index in order:
        atom = atoms[index]
        if atom.residue.index not in new_residues:
            new_residues[atom.residue.index] = topology.addResidue(atom.residue.name, chain)
        residue = new_residues[atom.residue.index]
        new_atoms[index] = topology.addAtom(atom.name, atom.element, residue)
    for a, b in modeller.topology.bonds():
        topology.addBond(new_atoms[a.index], new_atoms[b.index])
    positions = np.array(modeller.positions.value_in_unit(unit.nanometer))[order]
    return app.Modeller(topology, positions * unit.nanometer)


def true_angles(proposal: ICBackboneProposal, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(phi, psi) [B, E]`` of positions ``[B, N, 3]`` measured directly (0 where undefined)."""
    phi = torsion_angles(*(x[:, proposal.phi_atoms[:, i]] for i in range(4)))
    psi = torsion_angles(*(x[:, proposal.psi_atoms[:, i]] for i in range(4)))
    return (
        torch.where(proposal.defined_phi, phi, 0.0),
        torch.where(proposal.defined_psi, psi, 0.0),
    )


def uniforms(noise: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(noise.reshape(len(noise), -1) / math.sqrt(2)))


def move_noise(proposal: ICBackboneProposal, num_atoms: int, seed: int) -> torch.Tensor:
    """Noise for 36 proposals: 18 backbone moves over all residues, 9 rotor and 9 local moves."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(36, num_atoms, 3, generator=generator, dtype=torch.float64)
    backbone, rotor = proposal.backbone_weight, proposal.rotor_weight
    choice = torch.cat(
        [
            backbone * (torch.arange(18, dtype=torch.float64) + 0.5) / 18,
            backbone + rotor * torch.rand(9, generator=generator, dtype=torch.float64),
            backbone + rotor + (1 - backbone - rotor) * torch.rand(9, generator=generator).double(),
        ]
    )
    noise.view(36, -1)[:, proposal.num_internal] = math.sqrt(2) * torch.erfinv(2 * choice - 1)
    return noise


def brute_force_check(
    proposal: ICBackboneProposal,
    x: torch.Tensor,
    noise: torch.Tensor,
    model: torch.nn.Module | None = None,
) -> None:
    """logQRatio of each proposal of ``model`` (default ``proposal``) from the densities of
    ``proposal``'s move that made it, the backbone densities taken at the true angles of both
    states (the reverse move's density at x)."""
    transform = proposal.transform
    with torch.no_grad():
        proposals, log_ratio = (model or proposal)(x, torch.arange(x.shape[0]), noise)
    q, origin, rotation = transform.to_internal(x[None])
    phi, psi = true_angles(proposal, x[None])
    angle_rotor = torch.zeros(q.shape[1], dtype=torch.bool)
    angle_rotor[proposal.angle_rotor] = True
    rotor = torch.zeros(q.shape[1], dtype=torch.bool)
    rotor[proposal.rotor_index] = True
    choice = uniforms(noise)[:, q.shape[1]]
    moves = {"backbone": 0, "rotor": 0, "local": 0}
    for index, (x_new, ratio) in enumerate(zip(proposals, log_ratio, strict=True)):
        q_new, origin_new, rotation_new = transform.to_internal(x_new[None])
        assert torch.allclose(origin_new, origin, atol=1e-9)
        assert torch.allclose(rotation_new, rotation, atol=1e-7)
        change = torch.remainder(q_new - q + math.pi, 2 * math.pi) - math.pi
        if choice[index] < proposal.backbone_weight:
            moves["backbone"] += 1
            assert change[0, ~angle_rotor].abs().max() < 1e-7  # only backbone rotors move
            phi_new, psi_new = true_angles(proposal, x_new[None])
            changed = ((phi_new - phi).abs() > 1e-9) | ((psi_new - psi).abs() > 1e-9)
            assert int(changed.sum()) <= 1  # one residue per move by default
            expected = (
                log_density_at(proposal.log_density, phi, psi)
                - log_density_at(proposal.log_density, phi_new, psi_new)
            ).sum()
        elif choice[index] < proposal.backbone_weight + proposal.rotor_weight:
            moves["rotor"] += 1
            assert change[0, ~rotor].abs().max() < 1e-7  # the local geometry is kept
            expected = (
                rotor_log_density(q[:, rotor], proposal.raw, proposal.uniform_weight).sum()
                - rotor_log_density(q_new[:, rotor], proposal.raw, proposal.uniform_weight).sum()
            )
        else:
            moves["local"] += 1
            assert change[0, rotor | angle_rotor].abs().max() < 1e-7  # rotors are kept
            walk = ~(rotor | angle_rotor)
            step = noise.reshape(len(noise), -1)[index, : q.shape[1]][walk] * proposal.steps
            assert torch.allclose(change[0, walk], step, atol=1e-7)
            expected = transform.log_det_jacobian(q_new) - transform.log_det_jacobian(q)
        assert torch.isclose(ratio, expected.reshape(()).to(ratio.dtype), atol=1e-6), index
    assert all(count > 0 for count in moves.values())


def drawn_angle_error(proposal: ICBackboneProposal, x: torch.Tensor, noise: torch.Tensor) -> float:
    """The largest difference between the angles a backbone move drew (from the noise) and the
    true dihedrals of its proposal."""
    with torch.no_grad():
        proposals, _ = proposal(x, torch.arange(x.shape[0]), noise)
    u = uniforms(noise)
    choice = u[:, proposal.num_internal]
    phi, psi = true_angles(proposal, x[None])
    keys = proposal.draw_keys(phi, psi).expand(len(noise), -1)
    drawn_phi, drawn_psi = draw_angles(
        proposal.cdf,
        keys,
        u[:, proposal.first_noise],
        u[:, proposal.second_noise],
        proposal.free_phi,
        proposal.free_psi,
    )
    new_phi, new_psi = true_angles(proposal, proposals)
    num_residues = len(proposal.free_phi)
    worst = 0.0
    for index in torch.nonzero(choice < proposal.backbone_weight).flatten().tolist():
        e = min(int(choice[index] / proposal.backbone_weight * num_residues), num_residues - 1)
        for free, drawn, new in (
            (proposal.free_phi, drawn_phi, new_phi),
            (proposal.free_psi, drawn_psi, new_psi),
        ):
            if free[e]:
                difference = torch.remainder(new[index, e] - drawn[index, e] + math.pi, 2 * math.pi)
                worst = max(worst, abs(float(difference) - math.pi))
    return worst


#: A capped and a zwitterionic peptide covering every residue case: joint (A, W, G in GPA's
#: middle... ), proline's conditional (P), a terminal marginal (first and last of GPA), and an
#: N-terminal proline, whose ring N is not a terminal atom to root the Z-matrix at (PYG).
CASES = [("APW", "capped"), ("GPA", "zwitterionic"), ("VGDK", "capped"), ("PYG", "zwitterionic")]


def built(
    sequence: str, termini: str, network_seed: int = 1, scale: float = 0.5, **options
) -> tuple:
    modeller = build_peptide(sequence, termini)
    network = random_network(network_seed, scale)
    proposal = backbone_proposal(network, modeller.topology, **options)
    return modeller, proposal.double()


@pytest.mark.parametrize(("sequence", "termini"), CASES)
def test_residue_cases(sequence, termini):
    _, proposal = built(sequence, termini)
    cases = list(
        zip(
            proposal.free_phi.tolist(),
            proposal.free_psi.tolist(),
            proposal.defined_phi.tolist(),
            proposal.defined_psi.tolist(),
            strict=True,
        )
    )
    expected = {
        # (free phi, free psi, defined phi, defined psi) per movable residue
        "APW": [(True, True, True, True), (False, True, True, True), (True, True, True, True)],
        "GPA": [(False, True, False, True), (False, True, True, True), (True, False, True, False)],
        "VGDK": [(True, True, True, True)] * 4,
        "PYG": [(False, True, False, True), (True, True, True, True), (True, False, True, False)],
    }[sequence]
    assert cases == expected


@pytest.mark.parametrize(("sequence", "termini"), CASES)
def test_log_q_ratio_of_all_moves(sequence, termini):
    modeller, proposal = built(sequence, termini)
    x = positions_of(modeller)
    brute_force_check(proposal, x, move_noise(proposal, x.shape[0], seed=3))


@pytest.mark.parametrize(("sequence", "termini"), CASES)
def test_drawn_angles_are_the_proposals_dihedrals(sequence, termini):
    modeller, proposal = built(sequence, termini)
    x = positions_of(modeller)
    assert drawn_angle_error(proposal, x, move_noise(proposal, x.shape[0], seed=4)) < 1e-8


def _angle_read_error(
    proposal: ICBackboneProposal, q: torch.Tensor, scripted: bool = False
) -> float:
    """Largest wrapped difference between the angles read from torsions (by ``proposal`` or its
    scripted copy) and those of the atoms it places."""
    placed = torch.cat(proposal.backbone_angles(q), dim=1)
    reader = torch.jit.script(proposal) if scripted else proposal
    read = torch.cat(reader.angles_from_torsions(q), dim=1)
    return float((torch.remainder(read - placed + math.pi, 2 * math.pi) - math.pi).abs().max())


def _random_torsions(proposal: ICBackboneProposal, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Internal coordinates of ``x`` with every torsion redrawn uniformly, 64 times."""
    q, _, _ = proposal.internal(x[None], torch.arange(x.shape[0]))
    q = q.repeat(64, 1)
    first = proposal.transform.num_bonds + proposal.transform.num_angles
    generator = torch.Generator().manual_seed(seed)
    q[:, first:] = (torch.rand(q[:, first:].shape, generator=generator, dtype=q.dtype) - 0.5) * (
        2 * math.pi
    )
    return q


@pytest.mark.parametrize(("sequence", "termini"), CASES)
def test_angles_read_from_torsions_are_the_placed_dihedrals(sequence, termini):
    modeller, proposal = built(sequence, termini)
    q = _random_torsions(proposal, positions_of(modeller), seed=6)
    assert _angle_read_error(proposal, q) < 1e-10
    assert _angle_read_error(proposal, q, scripted=True) < 1e-10


def test_every_amino_acid_builds_as_the_n_terminus_of_a_zwitterion():
    # The N-terminal residue decides where the Z-matrix is rooted (proline's N is in its ring).
    for amino_acid in "ACDEFGHIKLMNPQRSTVWY":
        modeller, proposal = built(f"{amino_acid}G", "zwitterionic")
        q = _random_torsions(proposal, positions_of(modeller), seed=7)
        assert _angle_read_error(proposal, q) < 1e-10, amino_acid


def test_angles_read_without_sibling_offsets_are_caught():
    modeller, proposal = built("APW", "capped")
    q = _random_torsions(proposal, positions_of(modeller), seed=6)
    rotors = proposal.angle_rotor - proposal.transform.num_bonds - proposal.transform.num_angles
    only_rotors = torch.zeros_like(proposal.angle_coefficients)
    only_rotors[rotors] = proposal.angle_coefficients[rotors]
    proposal.angle_coefficients.copy_(only_rotors)
    assert _angle_read_error(proposal, q) > 1e-3


def test_atoms_in_another_order_give_the_same_moves():
    modeller = permuted(build_peptide("KAF", "zwitterionic"), seed=2)
    proposal = backbone_proposal(random_network(1), modeller.topology).double()
    x = positions_of(modeller)
    noise = move_noise(proposal, x.shape[0], seed=5)
    assert drawn_angle_error(proposal, x, noise) < 1e-8
    brute_force_check(proposal, x, noise)


def test_several_residues_per_move_are_exact():
    modeller, proposal = built("AVLS", "capped", extra_residue_fraction=0.5)
    x = positions_of(modeller)
    noise = move_noise(proposal, x.shape[0], seed=6)
    with torch.no_grad():
        proposals, log_ratio = proposal(x, torch.arange(x.shape[0]), noise)
    phi, psi = true_angles(proposal, x[None])
    new_phi, new_psi = true_angles(proposal, proposals[:18])
    assert (((new_phi - phi).abs() > 1e-9) | ((new_psi - psi).abs() > 1e-9)).sum(-1).max() > 1
    expected = (
        log_density_at(proposal.log_density, phi, psi)
        - log_density_at(proposal.log_density, new_phi, new_psi)
    ).sum(-1)
    assert torch.allclose(log_ratio[:18], expected, atol=1e-6)


def _draw_counts(proposal: ICBackboneProposal, x: torch.Tensor, draws: int, seed: int):
    """Bin counts of the proposals' true (phi, psi) over ``draws`` backbone moves."""
    noise = torch.randn(draws, x.shape[0], 3, generator=torch.Generator().manual_seed(seed))
    noise = noise.double()
    noise.view(draws, -1)[:, proposal.num_internal] = -4.0  # backbone moves
    with torch.no_grad():
        proposals, _ = proposal(x, torch.arange(x.shape[0]), noise)
    phi, psi = true_angles(proposal, proposals)
    grid = proposal.log_density.shape[1]
    flat = angle_bins(phi[:, 0], grid) * grid + angle_bins(psi[:, 0], grid)
    return torch.bincount(flat, minlength=grid * grid).double()


def _chi_square(counts: torch.Tensor, probabilities: torch.Tensor) -> tuple[float, int]:
    keep = probabilities > 0
    expected = counts.sum() * probabilities[keep]
    return float(((counts[keep] - expected) ** 2 / expected).sum()), int(keep.sum()) - 1


def test_backbone_draws_follow_the_histogram():
    """Chi-square of the joint draws of ACE-ALA-NME (8 x 8 bins) and of proline's psi given its
    phi bin, against the tables' probabilities; fails if the draw or the table is wrong."""
    for sequence, joint in (("A", True), ("P", False)):
        modeller = build_peptide(sequence, "capped")
        network = random_network(2, scale=1.0, grid=8)
        proposal = backbone_proposal(network, modeller.topology, uniform_weight=0.1).double()
        x = positions_of(modeller)
        counts = _draw_counts(proposal, x, 20_000, seed=7)
        width = 2 * math.pi / 8
        density = proposal.log_density[0].exp()
        if joint:
            probabilities = (density * width**2).flatten()
        else:
            phi, _ = true_angles(proposal, x[None])
            row = int(angle_bins(phi, 8)[0, 0])
            probabilities = torch.zeros(8, 8, dtype=torch.float64)
            probabilities[row] = density[row] * width
            probabilities = probabilities.flatten()
        assert abs(float(probabilities.sum()) - 1) < 1e-9
        statistic, dof = _chi_square(counts, probabilities)
        assert statistic < dof + TOLERANCE * math.sqrt(2 * dof), (sequence, statistic, dof)
        if not joint:  # nothing outside the current phi bin
            assert counts[probabilities == 0].sum() == 0


def test_chi_square_catches_a_wrong_histogram():
    modeller = build_peptide("A", "capped")
    proposal = backbone_proposal(random_network(2, scale=1.0, grid=8), modeller.topology)
    proposal = proposal.double()
    counts = _draw_counts(proposal, positions_of(modeller), 20_000, seed=7)
    wrong = proposal.log_density[0].exp().T * (2 * math.pi / 8) ** 2  # phi and psi swapped
    statistic, dof = _chi_square(counts, wrong.flatten())
    assert statistic > dof + TOLERANCE * math.sqrt(2 * dof)


def test_flipped_ratio_is_caught():
    modeller, proposal = built("APW", "capped")
    x = positions_of(modeller)
    with pytest.raises(AssertionError):
        noise = move_noise(proposal, x.shape[0], seed=3)
        brute_force_check(proposal, x, noise, SignFlipped(proposal))


def test_wrong_offset_sign_is_caught():
    modeller, proposal = built("APW", "capped")
    proposal.angle_sign.neg_()
    x = positions_of(modeller)
    assert drawn_angle_error(proposal, x, move_noise(proposal, x.shape[0], seed=4)) > 1e-3


class BackboneDensityInLocalMove(ICBackboneProposal):
    """A wrong proposal: the backbone densities enter the local move's ratio."""

    def propose_internal(self, q_chains, noise):
        q_new, log_ratio = super().propose_internal(q_chains, noise)
        phi, psi = self.backbone_angles(q_chains.repeat_interleave(noise.shape[1], dim=0))
        new_phi, new_psi = self.backbone_angles(q_new)
        extra = (
            log_density_at(self.log_density, phi, psi)
            - log_density_at(self.log_density, new_phi, new_psi)
        ).sum(-1)
        choice = 0.5 * (1 + torch.erf(noise.reshape(len(q_new), -1)[:, self.num_internal] / 2**0.5))
        local = choice >= self.backbone_weight + self.rotor_weight
        return q_new, torch.where(local, log_ratio + extra, log_ratio)


def test_backbone_density_in_the_local_move_is_caught():
    modeller, proposal = built("APW", "capped")
    proposal.__class__ = BackboneDensityInLocalMove
    x = positions_of(modeller)
    with pytest.raises(AssertionError):
        brute_force_check(proposal, x, move_noise(proposal, x.shape[0], seed=3))


def _with_extra_residue(termini: str, name: str) -> app.Topology:
    topology = build_peptide("AA", termini).topology
    residue = topology.addResidue(name, next(topology.chains()))
    oxygen = topology.addAtom("O", app.element.oxygen, residue)
    for hydrogen in ("H1", "H2"):
        topology.addBond(oxygen, topology.addAtom(hydrogen, app.element.hydrogen, residue))
    return topology


def test_what_is_not_a_linear_peptide_is_refused():
    network = random_network(0)
    with pytest.raises(ValueError, match="other residues: HOH"):
        backbone_proposal(network, _with_extra_residue("zwitterionic", "HOH"))
    cyclic = build_peptide("AGA", "zwitterionic").topology
    atoms = {(a.residue.index, a.name): a for a in cyclic.atoms()}
    cyclic.addBond(atoms[(2, "C")], atoms[(0, "N")])
    with pytest.raises(ValueError, match="cyclic"):
        backbone_proposal(network, cyclic)
    branched = build_peptide("KAA", "zwitterionic").topology
    atoms = {(a.residue.index, a.name): a for a in branched.atoms()}
    branched.addBond(atoms[(0, "NZ")], atoms[(2, "C")])
    with pytest.raises(ValueError, match="not a peptide bond"):
        backbone_proposal(network, branched)
    two = build_peptide("AA", "zwitterionic")
    other = build_peptide("GG", "zwitterionic")
    two.add(other.topology, other.positions)
    with pytest.raises(ValueError, match="several chains"):
        backbone_proposal(network, two.topology)
    missing = build_peptide("AAA", "capped")
    missing.delete([a for a in missing.topology.atoms() if a.residue.index == 2 and a.name == "CA"])
    with pytest.raises(ValueError, match="no backbone atom CA"):
        backbone_proposal(network, missing.topology)


def validation_nll(model: BackboneTrainingModel, peptide: PeptideData) -> float:
    with torch.no_grad():
        x_cond, x_next = peptide.validation
        return float(model.training_nll(x_cond, x_next, peptide.atom_types).mean())


def test_training_decreases_the_nll(tmp_path):
    topologies, peptides = [], []
    vocabulary = peptide_atom_vocabulary()
    generator = torch.Generator().manual_seed(0)
    for sequence, termini in (("AS", "zwitterionic"), ("GP", "capped")):
        modeller = build_peptide(sequence, termini)
        topologies.append(modeller.topology)
        names = [atom.name for atom in modeller.topology.atoms()]
        x = positions_of(modeller).float()
        frames = x + 0.01 * torch.randn(96, *x.shape, generator=generator)
        types = torch.tensor([vocabulary.index(name) for name in names])
        peptides.append(
            PeptideData((frames[:64], frames[:64]), (frames[64:], frames[64:]), types, sequence)
        )
    model = BackboneTrainingModel(random_network(0, scale=0.0), topologies)
    before = [validation_nll(model, p) for p in peptides]
    settings = TrainingSettings(
        max_steps=60, batch_size=32, validate_every=20, checkpoint_every=60, warmup_steps=5
    )
    result = train_peptides(model, peptides, tmp_path / "train", settings, progress=False)
    after = [validation_nll(model, p) for p in peptides]
    assert result.best_validation_nll < sum(before) / len(before)
    assert all(a < b - 1.0 for a, b in zip(after, before, strict=True)), (before, after)


@pytest.fixture
def transferable_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path / "cache"))
    metadata = ModelMetadata(
        name="tiny-backbone",
        family="ic-backbone",
        tau_ps=500.0,
        temperature_K=310.0,
        forcefield="amber14-all + OBC2",
        atom_type_scheme="peptide-atom",
        atom_types=list(peptide_atom_vocabulary()),
        num_atoms=None,
    )
    return save_network(random_network(5, scale=0.05), tmp_path / "tiny.pt", metadata)


@pytest.mark.parametrize("termini", ["capped", "zwitterionic"])
def test_transferable_file_runs_a_tetrapeptide_in_the_integrator(transferable_file, termini):
    modeller = build_peptide("KAPW", termini)
    integrator = TimewarpIntegrator(transferable_file, 310.0, topology=modeller.topology, seed=2)
    metadata = integrator.getMetadata()
    assert metadata.family == "ic-backbone"
    assert metadata.num_atoms == modeller.topology.getNumAtoms()
    assert metadata.training["transferable_model"] == "tiny-backbone"
    assert load_metadata(transferable_file).family == "ic-backbone"
    context = openmm.Context(
        create_system(modeller.topology), integrator, openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    integrator.step(100)
    assert integrator.getNumProposed() == 100
    assert integrator.getNumAccepted() > 0


def bonds_and_angles_only(topology: app.Topology) -> openmm.System:
    """amber14's bonds and angles alone: the energy does not change when one side of a non-ring
    bond turns about it, so every free phi and psi is exactly uniform at equilibrium."""
    system = create_system(topology)
    for index in reversed(range(system.getNumForces())):
        if not isinstance(
            system.getForce(index), openmm.HarmonicBondForce | openmm.HarmonicAngleForce
        ):
            system.removeForce(index)
    return system


def uniform_angle_failures(model: torch.nn.Module, proposal: ICBackboneProposal, tmp_path):
    """Chain averages of cos and sin of every free angle against 0 (exact), in standard errors
    from 25 batch means; the failures."""
    modeller = build_peptide("AP", "capped")
    path = tmp_path / "backbone.pt"
    metadata = ModelMetadata.for_molecule(
        proposal.labels,
        name="AP",
        family="ic-backbone",
        tau_ps=1.0,
        temperature_K=310.0,
        forcefield="amber14 bonds and angles",
    )
    export(model, path, metadata)
    integrator = TimewarpIntegrator(path, 310.0, topology=modeller.topology, seed=13)
    context = openmm.Context(
        bonds_and_angles_only(modeller.topology),
        integrator,
        openmm.Platform.getPlatformByName("Reference"),
    )
    context.setPositions(modeller.positions)
    integrator.step(500)
    frames = []
    for _ in range(2_000):
        integrator.step(4)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    phi, psi = true_angles(proposal, torch.tensor(np.array(frames)))
    series = {}
    for e in range(len(proposal.free_phi)):
        for name, free, angle in (("phi", proposal.free_phi, phi), ("psi", proposal.free_psi, psi)):
            if free[e]:
                series[f"cos {name}{e}"] = torch.cos(angle[:, e]).numpy()
                series[f"sin {name}{e}"] = torch.sin(angle[:, e]).numpy()
    failures = []
    for name, values in series.items():
        error = values.reshape(25, -1).mean(axis=1).std(ddof=1) / math.sqrt(25)
        line = f"<{name}> {values.mean():.4f} vs exact 0 (standard error {error:.4f})"
        print(line)
        if not abs(values.mean()) <= TOLERANCE * error:
            failures.append(line)
    return failures


@pytest.mark.slow
def test_chain_samples_free_backbone_angles_uniformly(tmp_path):
    """Through the integrator, with backbone densities far from uniform (joint for ALA, psi
    given phi for PRO): the chain's free angles are uniform, as the energy says."""
    _, proposal = built("AP", "capped", network_seed=8, scale=1.5, uniform_weight=0.05)
    assert uniform_angle_failures(proposal, proposal, tmp_path) == []


@pytest.mark.slow
def test_uniform_angle_check_fails_with_flipped_ratio(tmp_path):
    _, proposal = built("AP", "capped", network_seed=8, scale=1.5, uniform_weight=0.05)
    assert uniform_angle_failures(SignFlipped(proposal), proposal, tmp_path) != []


def test_bundled_peptides_model_never_saw_a_held_out_sequence(tmp_path, monkeypatch):
    from openmm_timewarp.data.splits import load_split

    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path))
    metadata = load_metadata("peptides")
    assert metadata.family == "ic-backbone" and metadata.num_atoms is None
    assert metadata.atom_type_scheme == "peptide-atom"
    dipeptides, tetrapeptides = load_split("dipeptides"), load_split("tetrapeptides")
    trained_on = set(metadata.training["data"])
    assert trained_on and trained_on <= set(dipeptides.training) | set(tetrapeptides.training)
    assert not trained_on & (set(dipeptides.held_out) | set(tetrapeptides.held_out))
    modeller = build_peptide(tetrapeptides.held_out[0], "capped")
    integrator = TimewarpIntegrator("peptides", 310.0, topology=modeller.topology, seed=1)
    context = openmm.Context(
        create_system(modeller.topology), integrator, openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(modeller.positions)
    integrator.step(200)
    assert integrator.getNumAccepted() > 0
