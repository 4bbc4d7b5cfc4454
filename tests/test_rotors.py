"""Transferable rotor proposals (family ic-rotor): rotors, logQRatio, exactness, any peptide."""

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
from openmm_timewarp.models.resolve import load_metadata, model_file_for_topology
from openmm_timewarp.proposals.ic.zmatrix import build_zmatrix
from openmm_timewarp.proposals.rotors.densities import rotor_log_density
from openmm_timewarp.proposals.rotors.features import ROTOR, backbone_rotors, molecule_features
from openmm_timewarp.proposals.rotors.network import RotorNetwork, save_network
from openmm_timewarp.proposals.rotors.proposal import ICRotorProposal, rotor_proposal

torch.set_num_threads(1)

TEMPERATURE = 300.0
KT = (unit.MOLAR_GAS_CONSTANT_R * TEMPERATURE * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
TOLERANCE = 4.0
NUM_BATCHES = 25


def random_network(seed: int, scale: float = 0.3) -> RotorNetwork:
    """A network off its uniform initialisation, so rotor densities are far from uniform."""
    torch.manual_seed(seed)
    network = RotorNetwork(len(peptide_atom_vocabulary()), hidden=32, num_bins=8, atom_dim=8)
    network.known_names[:] = True
    with torch.no_grad():
        for parameter in network.net[-1].parameters():
            parameter.normal_(0.0, scale)
    return network


def positions_of(modeller: app.Modeller) -> torch.Tensor:
    return torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer)))


def coordinate_kinds(sequence: str, termini: str = "zwitterionic") -> dict[str, int]:
    topology = build_peptide(sequence, termini).topology
    zmatrix = build_zmatrix(topology)
    features = molecule_features(topology, zmatrix, peptide_atom_vocabulary())
    names = zmatrix.coordinate_names()
    return dict(zip(names, features.coordinate_kinds.tolist(), strict=True))


def test_rotors_are_the_rotatable_bonds():
    kinds = coordinate_kinds("FA")
    rotors = {name for name, kind in kinds.items() if kind == ROTOR}
    central = {tuple(sorted(name.split()[1].split("-")[1:3])) for name in rotors}
    bonds = {tuple(sorted((f"0:PHE:{a}", f"0:PHE:{b}"))) for a, b in (("CA", "C"), ("CA", "N"))}
    bonds |= {tuple(sorted(("0:PHE:CA", "0:PHE:CB"))), tuple(sorted(("0:PHE:CB", "0:PHE:CG")))}
    bonds |= {tuple(sorted(("0:PHE:C", "1:ALA:N"))), tuple(sorted(("1:ALA:N", "1:ALA:CA")))}
    bonds |= {tuple(sorted(("1:ALA:CA", "1:ALA:C"))), tuple(sorted(("1:ALA:CA", "1:ALA:CB")))}
    # Backbone psi / omega / phi, the amine and carboxylate, chi1, chi2 and the methyl rotor:
    # one rotor per rotatable bond, none inside the phenyl ring.
    assert central == bonds
    assert len(rotors) == len(bonds)
    ring_atoms = {"CG", "CD1", "CD2", "CE1", "CE2", "CZ"}
    ring_torsions = [
        name
        for name in kinds
        if name.startswith("torsion")
        and {label.split(":")[2] for label in name.split()[1].split("-")[1:3]} <= ring_atoms
    ]
    assert ring_torsions and all(kinds[name] != ROTOR for name in ring_torsions)
    topology = build_peptide("FA", "zwitterionic").topology
    features = molecule_features(topology, build_zmatrix(topology), peptide_atom_vocabulary())
    rotor_bonds = [
        {label.split(":")[2] for label in name.split()[1].split("-")[1:3]}
        for name, kind in kinds.items()
        if kind == ROTOR
    ]
    backbone = [bond in ({"N", "CA"}, {"CA", "C"}, {"C", "N"}) for bond in rotor_bonds]
    assert backbone_rotors(topology, features).tolist() == backbone and sum(backbone) == 5


def brute_force_check(proposal: ICRotorProposal, x: torch.Tensor, noise: torch.Tensor) -> None:
    """logQRatio of each proposal from the densities of the move that made it."""
    transform = proposal.transform
    types = torch.arange(x.shape[0])
    with torch.no_grad():
        proposals, log_ratio = proposal(x, types, noise)
    q, origin, rotation = transform.to_internal(x[None])
    rotor = torch.zeros(q.shape[1], dtype=torch.bool)
    rotor[proposal.rotor_index] = True
    rotor_move = torch.erf(noise.reshape(len(noise), -1)[:, q.shape[1]] / math.sqrt(2)) < (
        2 * proposal.rotor_weight - 1
    )
    for index, (x_new, ratio) in enumerate(zip(proposals, log_ratio, strict=True)):
        q_new, origin_new, rotation_new = transform.to_internal(x_new[None])
        assert torch.allclose(origin_new, origin, atol=1e-9)
        assert torch.allclose(rotation_new, rotation, atol=1e-7)
        change = torch.remainder(q_new - q + math.pi, 2 * math.pi) - math.pi
        if rotor_move[index]:
            assert change[0, ~rotor].abs().max() < 1e-7  # the local geometry is kept
            expected = (
                rotor_log_density(q[:, rotor], proposal.raw, proposal.uniform_weight).sum()
                - rotor_log_density(q_new[:, rotor], proposal.raw, proposal.uniform_weight).sum()
            )
        else:
            assert change[0, rotor].abs().max() < 1e-7  # rotors are kept
            step = noise.reshape(len(noise), -1)[index, : q.shape[1]][~rotor] * proposal.steps
            assert torch.allclose(change[0, ~rotor], step, atol=1e-7)
            expected = transform.log_det_jacobian(q_new) - transform.log_det_jacobian(q)
        assert torch.isclose(ratio, expected.reshape(()).to(ratio.dtype), atol=1e-6), index


@pytest.mark.parametrize("sequence", ["AG", "WP", "RE"])
def test_log_q_ratio_of_both_moves(sequence):
    modeller = build_peptide(sequence, "zwitterionic")
    proposal = rotor_proposal(
        random_network(1), modeller.topology, rotor_fraction=0.3, backbone_fraction=0.7
    ).double()
    x = positions_of(modeller)
    noise = torch.randn(12, x.shape[0], 3, generator=torch.Generator().manual_seed(3)).double()
    flat = noise.view(12, -1)
    flat[:6, proposal.num_internal] = -3.0  # six rotor moves, six local moves
    flat[6:, proposal.num_internal] = 3.0
    brute_force_check(proposal, x, noise)


def test_rotor_draws_follow_their_density():
    """The fraction of draws below a few angles matches the density's integral (binomial SE)."""
    raw = random_network(2)(*_features_of("AA")).double()[:1, :-2].detach() * 3
    uniform = torch.rand(20_000, 1, generator=torch.Generator().manual_seed(5)).double()
    from openmm_timewarp.proposals.ic.splines import rational_quadratic

    unit_draw, _ = rational_quadratic(
        uniform, raw.expand(len(uniform), -1, -1), torch.ones_like(uniform, dtype=torch.bool), False
    )
    draws = 2 * math.pi * unit_draw[:, 0] - math.pi
    grid = torch.linspace(-math.pi, math.pi, 20_001, dtype=torch.float64)
    density = rotor_log_density(grid[:, None], raw).exp()[:, 0]
    assert abs(torch.trapezoid(density, grid) - 1.0) < 1e-4
    for edge in (-2.0, -0.5, 1.0, 2.5):
        inside = grid <= edge
        expected = float(torch.trapezoid(density[inside], grid[inside]))
        observed = float((draws <= edge).double().mean())
        error = math.sqrt(expected * (1 - expected) / len(draws))
        assert abs(observed - expected) < TOLERANCE * error, (edge, observed, expected)


def _features_of(sequence: str):
    topology = build_peptide(sequence, "zwitterionic").topology
    f = molecule_features(topology, build_zmatrix(topology), peptide_atom_vocabulary())
    return f.names, f.graph, f.residue_names, f.coordinate_atoms, f.coordinate_kinds


# A four-atom chain N-CA-C-O with harmonic bonds and angles and a periodic torsion: its internal
# coordinates are independent with known densities (r^2 and sin(theta) from the volume element).
BOND_K, BOND_R0 = 2.0e4, 0.15
ANGLE_K, ANGLE_T0 = 150.0, 1.9
TORSION_TERMS = ((1, 2.0, 0.4), (3, 3.0, 0.0))  # (periodicity, k kJ/mol, phase)


def chain_molecule() -> tuple[app.Topology, openmm.System, np.ndarray]:
    topology = app.Topology()
    residue = topology.addResidue("ALA", topology.addChain())
    elements = [app.element.nitrogen, app.element.carbon, app.element.carbon, app.element.oxygen]
    atoms = [
        topology.addAtom(n, e, residue)
        for n, e in zip(("N", "CA", "C", "O"), elements, strict=True)
    ]
    system = openmm.System()
    bonds, angles = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()
    torsions = openmm.PeriodicTorsionForce()
    for element in elements:
        system.addParticle(element.mass)
    for i in range(3):
        topology.addBond(atoms[i], atoms[i + 1])
        bonds.addBond(i, i + 1, BOND_R0, BOND_K)
    for i in range(2):
        angles.addAngle(i, i + 1, i + 2, ANGLE_T0, ANGLE_K)
    for periodicity, k, phase in TORSION_TERMS:
        torsions.addTorsion(0, 1, 2, 3, periodicity, phase, k)
    for force in (bonds, angles, torsions):
        system.addForce(force)
    start = np.array([[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.2, 0.14, 0.0], [0.35, 0.15, 0.05]])
    return topology, system, start


def chain_exact() -> dict[str, float]:
    def average(values, log_weight, grid):
        weight = np.exp(log_weight - log_weight.max())
        return float(np.trapezoid(values * weight, grid) / np.trapezoid(weight, grid))

    r = np.linspace(0.05, 0.25, 20_001)
    log_r = 2 * np.log(r) - 0.5 * BOND_K * (r - BOND_R0) ** 2 / KT
    theta = np.linspace(1e-3, math.pi - 1e-3, 20_001)
    log_theta = np.log(np.sin(theta)) - 0.5 * ANGLE_K * (theta - ANGLE_T0) ** 2 / KT
    phi = np.linspace(-math.pi, math.pi, 20_001)
    energy = sum(k * (1 + np.cos(n * phi - phase)) for n, k, phase in TORSION_TERMS)
    return {
        "<r>": average(r, log_r, r),
        "<theta>": average(theta, log_theta, theta),
        "<cos phi>": average(np.cos(phi), -energy / KT, phi),
        "<sin phi>": average(np.sin(phi), -energy / KT, phi),
    }


def chain_observables(samples: np.ndarray) -> dict[str, np.ndarray]:
    x = torch.from_numpy(samples)
    r = torch.linalg.vector_norm(x[:, 1] - x[:, 0], dim=-1)
    u, v = x[:, 0] - x[:, 1], x[:, 2] - x[:, 1]
    theta = torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))
    b0, b1, b2 = x[:, 0] - x[:, 1], x[:, 2] - x[:, 1], x[:, 3] - x[:, 2]
    axis = b1 / b1.norm(dim=-1, keepdim=True)
    p = b0 - (b0 * axis).sum(-1, keepdim=True) * axis
    w = b2 - (b2 * axis).sum(-1, keepdim=True) * axis
    phi = torch.atan2((torch.linalg.cross(axis, p) * w).sum(-1), (p * w).sum(-1))
    return {
        "<r>": r.numpy(),
        "<theta>": theta.numpy(),
        "<cos phi>": torch.cos(phi).numpy(),
        "<sin phi>": torch.sin(phi).numpy(),
    }


def chain_failures(model: torch.nn.Module, tmp_path, seed: int) -> list[str]:
    topology, system, start = chain_molecule()
    path = tmp_path / "chain-rotor.pt"
    labels = build_zmatrix(topology).labels
    metadata = ModelMetadata(
        name="chain",
        family="ic-rotor",
        tau_ps=1.0,
        temperature_K=TEMPERATURE,
        forcefield="test",
        atom_type_scheme="residue-atom",
        atom_types=list(labels),
        num_atoms=4,
    )
    export(model, path, metadata)
    integrator = TimewarpIntegrator(path, TEMPERATURE, topology=topology, seed=seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(start)
    integrator.step(1_000)
    samples = []
    for _ in range(2_500):
        integrator.step(8)
        samples.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    assert 0.1 < integrator.getAcceptanceRate() < 0.95
    failures = []
    exact = chain_exact()
    for name, series in chain_observables(np.array(samples)).items():
        batches = series[: len(series) // NUM_BATCHES * NUM_BATCHES].reshape(NUM_BATCHES, -1)
        error = batches.mean(axis=1).std(ddof=1) / math.sqrt(NUM_BATCHES)
        line = (
            f"{name}: {series.mean():.5g} vs exact {exact[name]:.5g} (standard error {error:.2g})"
        )
        print(line)
        if not abs(series.mean() - exact[name]) <= TOLERANCE * error:
            failures.append(line)
    return failures


def chain_proposal() -> ICRotorProposal:
    """A far-from-uniform rotor density and walk steps of half the thermal widths."""
    topology, _, _ = chain_molecule()
    zmatrix = build_zmatrix(topology)
    rotor = torch.tensor([False] * 5 + [True])
    raw = 1.5 * torch.randn(1, 25, generator=torch.Generator().manual_seed(4))
    widths = [math.sqrt(KT / BOND_K)] * 3 + [math.sqrt(KT / ANGLE_K)] * 2
    return ICRotorProposal(zmatrix, rotor, raw, 0.7 * torch.tensor(widths), 0.6, 1.0)


def test_chain_molecule_is_sampled_exactly(tmp_path):
    assert chain_failures(chain_proposal(), tmp_path, seed=11) == []


def test_chain_check_fails_with_flipped_log_q_ratio(tmp_path):
    assert chain_failures(SignFlipped(chain_proposal()), tmp_path, seed=11) != []


@pytest.mark.parametrize("sequence", ["IN", "PW", "GS", "RV"])
def test_any_dipeptide_gets_a_proposal(sequence):
    """Held-out and unseen residues (rings, proline, glycine, charged) all build and propose."""
    modeller = build_peptide(sequence, "zwitterionic")
    proposal = torch.jit.script(rotor_proposal(random_network(3), modeller.topology))
    x = positions_of(modeller).float()
    noise = torch.randn(16, x.shape[0], 3, generator=torch.Generator().manual_seed(0))
    proposals, log_ratio = proposal(x, torch.arange(x.shape[0]), noise)
    assert proposals.shape == (16, x.shape[0], 3) and torch.isfinite(proposals).all()
    assert torch.isfinite(log_ratio).all()


def test_non_peptides_are_refused():
    topology = build_peptide("AA", "zwitterionic").topology
    water = topology.addResidue("HOH", topology.addChain())
    oxygen = topology.addAtom("O", app.element.oxygen, water)
    for name in ("H1", "H2"):
        topology.addBond(oxygen, topology.addAtom(name, app.element.hydrogen, water))
    with pytest.raises(ValueError, match="other residues: HOH"):
        rotor_proposal(random_network(0), topology)


@pytest.fixture
def transferable_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path / "cache"))
    metadata = ModelMetadata(
        name="tiny-rotors",
        family="ic-rotor",
        tau_ps=500.0,
        temperature_K=310.0,
        forcefield="amber14-all + OBC2",
        atom_type_scheme="peptide-atom",
        atom_types=list(peptide_atom_vocabulary()),
        num_atoms=None,
    )
    return save_network(random_network(5, scale=0.05), tmp_path / "tiny.pt", metadata)


def test_transferable_file_runs_any_dipeptide_in_the_integrator(transferable_file, tmp_path):
    for sequence in ("KH", "MW"):
        modeller = build_peptide(sequence, "zwitterionic")
        integrator = TimewarpIntegrator(transferable_file, 310.0, topology=modeller.topology)
        built = integrator.getMetadata()
        assert built.family == "ic-rotor" and built.num_atoms == modeller.topology.getNumAtoms()
        assert built.training["transferable_model"] == "tiny-rotors"
        context = openmm.Context(
            create_system(modeller.topology), integrator, openmm.Platform.getPlatformByName("CPU")
        )
        context.setPositions(modeller.positions)
        integrator.step(50)
        assert integrator.getNumProposed() == 50
        # The per-molecule file is cached: the same one again, not rebuilt.
        again = model_file_for_topology(transferable_file, modeller.topology)
        assert again == model_file_for_topology(transferable_file, modeller.topology)
        assert load_metadata(again).num_atoms == modeller.topology.getNumAtoms()
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_transferable_file_needs_a_topology(transferable_file):
    with pytest.raises(ValueError, match="give the topology"):
        TimewarpIntegrator(transferable_file, 310.0, atom_types=[0] * 30)


def test_bundled_dipeptides_model_is_transferable_and_never_saw_a_held_out_sequence(
    tmp_path, monkeypatch
):
    from openmm_timewarp.data.splits import load_split
    from openmm_timewarp.models.resolve import bundled_models

    if "dipeptides" not in bundled_models():
        pytest.skip("the transferable model is not bundled")
    monkeypatch.setenv("OPENMM_TIMEWARP_CACHE", str(tmp_path))
    metadata = load_metadata("dipeptides")
    assert metadata.family == "ic-rotor" and metadata.num_atoms is None
    assert metadata.atom_type_scheme == "peptide-atom"
    split = load_split()
    trained_on = set(metadata.training["data"])
    assert trained_on and trained_on <= set(split.training)
    assert not trained_on & set(split.held_out)
    modeller = build_peptide(split.held_out[0], "zwitterionic")
    integrator = TimewarpIntegrator("dipeptides", 310.0, topology=modeller.topology, seed=1)
    context = openmm.Context(
        create_system(modeller.topology), integrator, openmm.Platform.getPlatformByName("CPU")
    )
    context.setPositions(modeller.positions)
    integrator.step(200)
    assert integrator.getNumAccepted() > 0
