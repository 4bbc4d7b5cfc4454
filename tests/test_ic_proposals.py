"""Internal-coordinate proposal models: logQRatio, export, atom mapping and MH exactness."""

import math

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from openmm_timewarp.data.peptides import FORCEFIELD_NAME, build_peptide
from openmm_timewarp.models.contract import atom_types_for_topology, export, load_model
from openmm_timewarp.proposals.ic.families import (
    ICConditionalProposal,
    ICIndependentProposal,
    ICMixtureProposal,
    coordinate_bounds,
    proposal_metadata,
)
from openmm_timewarp.proposals.ic.splines import rational_quadratic
from openmm_timewarp.proposals.ic.zmatrix import InternalCoordinateTransform, build_zmatrix

torch.set_num_threads(1)

SMALL = dict(num_couplings=2, hidden=32, num_bins=4)


@pytest.fixture(scope="module")
def dipeptide() -> app.Modeller:
    return build_peptide("A")


def positions_of(modeller: app.Modeller) -> torch.Tensor:
    return torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer)))


def randomise(model: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Move every parameter off the identity initialisation, reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def make_models(modeller: app.Modeller) -> dict[str, torch.nn.Module]:
    zmatrix = build_zmatrix(modeller.topology)
    x = positions_of(modeller)
    lower, upper = coordinate_bounds(zmatrix, x.unsqueeze(0))
    conditional = randomise(ICConditionalProposal(zmatrix, lower, upper, **SMALL, seed=1), 1)
    independent = randomise(ICIndependentProposal(zmatrix, lower, upper, **SMALL, seed=2), 2)
    return {
        "conditional": conditional,
        "independent": independent,
        "mixture": ICMixtureProposal(conditional, independent, weight=0.3),
    }


def generative_log_density(sample, z: torch.Tensor) -> torch.Tensor:
    """log density of ``sample(z)`` by the change of variables, with an autograd Jacobian."""
    jacobian = torch.autograd.functional.jacobian(sample, z, vectorize=True)
    return -torch.linalg.slogdet(jacobian)[1]


def base_point(flow, q_unit: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    for coupling in flow.reversed_couplings:
        q_unit, _ = coupling(q_unit, context, True)
    return q_unit


def component_log_density(component, q: torch.Tensor, q_given: torch.Tensor | None):
    """Brute-force ``log q(q | q_given)`` of one flow component (``q_given`` None: independent)."""
    if q_given is None:
        context = q.new_zeros(1, 0)
    else:
        context = component.features(q_given[None])
    z = base_point(component.flow, component.to_unit(q[None]), context)[0]

    def sample(z_):
        u, _ = component.flow.sample(z_[None], context)
        return component.from_unit(u)[0]

    assert torch.allclose(sample(z), q, atol=1e-9)  # the inverse path found the right base point
    return generative_log_density(sample, z)


def cartesian_log_volume(transform, q: torch.Tensor) -> torch.Tensor:
    """log |det dx / d(frame, q)| with a fixed frame, from the full autograd Jacobian."""
    frame = torch.tensor([0.2, -0.1, 0.4, 0.3, -0.7, 0.5], dtype=q.dtype)

    def cartesian(coordinates):
        w = coordinates[3:6]
        zero = torch.zeros_like(w[0])
        skew = torch.stack(
            [
                torch.stack([zero, -w[2], w[1]]),
                torch.stack([w[2], zero, -w[0]]),
                torch.stack([-w[1], w[0], zero]),
            ]
        )
        rotation = torch.linalg.matrix_exp(skew)
        return transform.to_cartesian(coordinates[6:][None], coordinates[None, :3], rotation[None])

    jacobian = torch.autograd.functional.jacobian(cartesian, torch.cat([frame, q]), vectorize=True)
    return torch.linalg.slogdet(jacobian.reshape(jacobian.shape[-1], -1))[1]


@pytest.mark.parametrize("family", ["conditional", "independent", "mixture"])
def test_log_q_ratio_matches_brute_force(dipeptide, family):
    models = {name: model.double() for name, model in make_models(dipeptide).items()}
    model = models[family]
    x = positions_of(dipeptide)
    types = torch.arange(x.shape[0])
    noise = torch.randn(4, x.shape[0], 3, generator=torch.Generator().manual_seed(7)).double()
    if family == "mixture":  # one proposal from each component at least
        noise[:2, 20, 0] = -3.0
        noise[2:, 20, 0] = 3.0
    with torch.no_grad():
        proposals, log_ratio = model(x, types, noise)
    transform = models["conditional"].transform
    q, origin, rotation = transform.to_internal(x[None])
    for proposal, ratio in zip(proposals, log_ratio, strict=True):
        q_new, origin_new, rotation_new = transform.to_internal(proposal[None])
        # The proposal keeps the current state's external frame.
        assert torch.allclose(origin_new, origin, atol=1e-10)
        assert torch.allclose(rotation_new, rotation, atol=1e-8)
        q, q_new = q.reshape(-1), q_new.reshape(-1)
        densities = {}
        for name in ("conditional", "independent"):
            component = models[name]
            given = (q, q_new) if name == "conditional" else (None, None)
            densities[name] = (
                component_log_density(component, q_new, given[0]),
                component_log_density(component, q, given[1]),
            )
        if family == "mixture":
            w = model.weight
            forward, reverse = (
                torch.logaddexp(
                    math.log(w) + densities["conditional"][which],
                    math.log(1 - w) + densities["independent"][which],
                )
                for which in (0, 1)
            )
        else:
            forward, reverse = densities[family]
        expected = (
            reverse
            - forward
            + cartesian_log_volume(transform, q_new)
            - cartesian_log_volume(transform, q)
        )
        assert ratio.item() == pytest.approx(expected.item(), abs=1e-8)


@pytest.mark.parametrize("family", ["conditional", "independent", "mixture"])
def test_exported_model_equals_eager(dipeptide, family, tmp_path):
    model = make_models(dipeptide)[family]
    x = positions_of(dipeptide).float()
    metadata = proposal_metadata(model, "ala2-test", 10.0, 310.0, FORCEFIELD_NAME)
    assert metadata.family == f"ic-{family}"
    path = export(model, tmp_path / "model.pt", metadata, example_positions=x)
    loaded, loaded_metadata = load_model(path)
    assert loaded_metadata.atom_types == metadata.atom_types
    assert loaded.noise_dim == 3
    types = torch.arange(x.shape[0])
    noise = torch.randn(16, x.shape[0], 3, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        eager = model(x, types, noise)
        scripted = loaded(x, types, noise)
    assert scripted[0].dtype == torch.float32 and scripted[1].dtype == torch.float32
    assert torch.allclose(eager[0], scripted[0], atol=1e-5)
    assert torch.allclose(eager[1], scripted[1], atol=1e-3)
    assert torch.isfinite(scripted[1]).all()


def reordered(topology: app.Topology) -> tuple[app.Topology, list[int]]:
    """The same molecule with the atoms of every residue in reverse order; old index per atom."""
    copy = app.Topology()
    chain = copy.addChain()
    atom_map, old_index = {}, []
    for residue in topology.residues():
        new_residue = copy.addResidue(residue.name, chain)
        for atom in reversed(list(residue.atoms())):
            atom_map[atom] = copy.addAtom(atom.name, atom.element, new_residue)
            old_index.append(atom.index)
    for bond in topology.bonds():
        copy.addBond(atom_map[bond[0]], atom_map[bond[1]])
    return copy, old_index


def test_atoms_in_another_order_are_mapped(dipeptide):
    model = make_models(dipeptide)["conditional"]
    metadata = proposal_metadata(model, "ala2-test", 10.0, 310.0, FORCEFIELD_NAME)
    x = positions_of(dipeptide).float()
    topology, old_index = reordered(dipeptide.topology)
    types = torch.from_numpy(atom_types_for_topology(topology, metadata))
    assert types.tolist() == old_index
    noise = torch.randn(5, x.shape[0], 3, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        proposals, ratio = model(x, torch.arange(x.shape[0]), noise)
        proposals_shuffled, ratio_shuffled = model(x[old_index], types, noise)
    assert torch.allclose(proposals_shuffled, proposals[:, old_index], atol=1e-6)
    assert torch.allclose(ratio_shuffled, ratio, atol=1e-4)


def test_wrong_atom_types_are_refused(dipeptide):
    model = make_models(dipeptide)["independent"]
    x = positions_of(dipeptide).float()
    noise = torch.randn(2, x.shape[0], 3)
    types = torch.arange(x.shape[0])
    types[3] = types[4]
    with pytest.raises(ValueError, match="exactly once"):
        model(x, types, noise)
    with pytest.raises(ValueError, match="one residue-atom type code per atom"):
        model(x[:-1], torch.arange(x.shape[0] - 1), noise[:, :-1])
    metadata = proposal_metadata(model, "ala2-test", 10.0, 310.0, FORCEFIELD_NAME)
    with pytest.raises(ValueError):
        atom_types_for_topology(build_peptide("G").topology, metadata)


def test_mixture_weight_must_be_a_probability(dipeptide):
    models = make_models(dipeptide)
    for weight in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            ICMixtureProposal(models["conditional"], models["independent"], weight)


# --- Metropolis-Hastings exactness through TimewarpIntegrator ------------------------------------
# A chain of five carbons whose energy (harmonic bonds and angles, periodic torsions) uses exactly
# the Z-matrix's coordinates, so the Boltzmann distribution factorises over them: each bond has the
# density r^2 exp(-U(r)/kT), each angle sin(theta) exp(-U(theta)/kT), each torsion exp(-U(phi)/kT),
# on the model's bounded support. Exact averages come from quadrature of these marginals.

CHAIN_LENGTH = 5
TEMPERATURE = 310.0
KT = (unit.MOLAR_GAS_CONSTANT_R * TEMPERATURE * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
BOND_LENGTH, BOND_STD = 0.15, 0.03
ANGLE, ANGLE_STD = 1.9, 0.25
TORSIONS = [(3, 2.5, 0.0), (1, 3.0, math.pi)]  # periodicity, k (kJ/mol), phase
NUM_BONDS, NUM_ANGLES = CHAIN_LENGTH - 1, CHAIN_LENGTH - 2
TOLERANCE = 4.0
NUM_BATCHES = 20


def chain_molecule() -> tuple[app.Topology, openmm.System]:
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    atoms = [topology.addAtom(f"C{i}", app.element.carbon, residue) for i in range(CHAIN_LENGTH)]
    system = openmm.System()
    bonds, angles = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()
    torsions = openmm.PeriodicTorsionForce()
    for _ in range(CHAIN_LENGTH):
        system.addParticle(12.0)
    for i in range(NUM_BONDS):
        topology.addBond(atoms[i], atoms[i + 1])
        bonds.addBond(i, i + 1, BOND_LENGTH, KT / BOND_STD**2)
    for i in range(NUM_ANGLES):
        angles.addAngle(i, i + 1, i + 2, ANGLE, KT / ANGLE_STD**2)
    for i, (periodicity, k, phase) in enumerate(TORSIONS):
        torsions.addTorsion(i, i + 1, i + 2, i + 3, periodicity, phase, k)
    for force in (bonds, angles, torsions):
        system.addForce(force)
    return topology, system


def reduced_energy(index: int, value: np.ndarray) -> np.ndarray:
    """U / kT of internal coordinate ``index`` (bonds, angles, torsions in Z-matrix order)."""
    if index < NUM_BONDS:
        return 0.5 * ((value - BOND_LENGTH) / BOND_STD) ** 2
    if index < NUM_BONDS + NUM_ANGLES:
        return 0.5 * ((value - ANGLE) / ANGLE_STD) ** 2
    periodicity, k, phase = TORSIONS[index - NUM_BONDS - NUM_ANGLES]
    return k * (1 + np.cos(periodicity * value - phase)) / KT


def chain_bounds() -> tuple[torch.Tensor, torch.Tensor]:
    lower = [BOND_LENGTH - 4.3 * BOND_STD] * NUM_BONDS + [ANGLE - 4 * ANGLE_STD] * NUM_ANGLES
    upper = [BOND_LENGTH + 5 * BOND_STD] * NUM_BONDS + [ANGLE + 4 * ANGLE_STD] * NUM_ANGLES
    lower += [-math.pi] * len(TORSIONS)
    upper += [math.pi] * len(TORSIONS)
    return torch.tensor(lower), torch.tensor(upper)


def marginals() -> list[tuple[np.ndarray, np.ndarray]]:
    """Grid and normalised Boltzmann density of every internal coordinate on the support."""
    lower, upper = chain_bounds()
    result = []
    for index in range(len(lower)):
        grid = np.linspace(float(lower[index]), float(upper[index]), 20_001)
        log_weight = -reduced_energy(index, grid)
        if index < NUM_BONDS:
            log_weight += 2 * np.log(grid)
        elif index < NUM_BONDS + NUM_ANGLES:
            log_weight += np.log(np.sin(grid))
        weight = np.exp(log_weight - log_weight.max())
        result.append((grid, weight / np.trapezoid(weight, grid)))
    return result


def exact_internal_samples(count: int, seed: int) -> torch.Tensor:
    generator = np.random.default_rng(seed)
    columns = []
    for grid, density in marginals():
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
        columns.append(np.interp(generator.random(count), cdf / cdf[-1], grid))
    return torch.tensor(np.stack(columns, axis=1), dtype=torch.float32)


def chain_observables(q: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Per-sample series and exact averages."""
    grids = marginals()

    def average(index, function):
        grid, density = grids[index]
        return float(np.trapezoid(function(grid) * density, grid))

    first_torsion = NUM_BONDS + NUM_ANGLES
    bonds, angles = q[:, :NUM_BONDS], q[:, NUM_BONDS:first_torsion]
    energy = sum(reduced_energy(i, q[:, i]) for i in range(q.shape[1]))
    return {
        "<r>": (bonds.mean(1), average(0, lambda r: r)),
        "<(r - r0)^2>/std^2": (
            ((bonds - BOND_LENGTH) ** 2).mean(1) / BOND_STD**2,
            average(0, lambda r: (r - BOND_LENGTH) ** 2) / BOND_STD**2,
        ),
        "<theta>": (angles.mean(1), average(NUM_BONDS, lambda t: t)),
        "<cos 3 phi1>": (
            np.cos(3 * q[:, first_torsion]),
            average(first_torsion, lambda p: np.cos(3 * p)),
        ),
        "<cos phi2>": (np.cos(q[:, first_torsion + 1]), average(first_torsion + 1, np.cos)),
        "<U>/kT": (
            energy,
            sum(average(i, lambda v, i=i: reduced_energy(i, v)) for i in range(len(grids))),
        ),
    }


class JacobianDropped(torch.nn.Module):
    """The wrapped IC proposal with log J(i') - log J(i) left out of logQRatio: a wrong ratio."""

    def __init__(self, proposal: ICIndependentProposal) -> None:
        super().__init__()
        self.proposal = proposal
        self.noise_dim: int = proposal.noise_dim

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals, log_q_ratio = self.proposal(positions, atom_types, noise)
        q, _, _ = self.proposal.internal(positions.unsqueeze(0), atom_types)
        q_new, _, _ = self.proposal.internal(proposals, atom_types)
        transform = self.proposal.transform
        jacobian = transform.log_det_jacobian(q_new) - transform.log_det_jacobian(q)
        return proposals, log_q_ratio - jacobian


@pytest.fixture(scope="module")
def chain_models() -> dict[str, torch.nn.Module]:
    """An independent flow fitted to exact samples, and a random (broad) conditional flow."""
    topology, _ = chain_molecule()
    zmatrix = build_zmatrix(topology)
    lower, upper = chain_bounds()
    independent = ICIndependentProposal(zmatrix, lower, upper, num_couplings=2, hidden=64)
    data = exact_internal_samples(20_000, seed=0)
    optimiser = torch.optim.Adam(independent.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = data[torch.randint(len(data), (512,), generator=generator)]
        loss = -independent.log_density(batch).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    conditional = randomise(ICConditionalProposal(zmatrix, lower, upper, **SMALL, seed=1), 1)
    return {"independent": independent.eval(), "conditional": conditional.eval()}


def run_chain(model, metadata_model, steps: int, seed: int, path) -> np.ndarray:
    """Internal coordinates after every step of a TimewarpIntegrator chain: [steps, 3N - 6]."""
    from openmm_timewarp import TimewarpIntegrator

    topology, system = chain_molecule()
    metadata = proposal_metadata(metadata_model, "carbon-chain", 1.0, TEMPERATURE, "harmonic")
    export(model, path, metadata)
    integrator = TimewarpIntegrator(
        path, TEMPERATURE, topology=topology, chiral_centres=[], seed=seed
    )
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    transform = InternalCoordinateTransform(build_zmatrix(topology))
    start = exact_internal_samples(1, seed=seed).double()
    frame = (torch.zeros(1, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)[None])
    context.setPositions(transform.to_cartesian(start, *frame)[0].numpy())
    positions = []
    for _ in range(steps):
        integrator.step(1)
        positions.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    assert integrator.getNumProposed() == steps
    assert integrator.getAcceptanceRate() > 0.1
    q, _, _ = transform.to_internal(torch.tensor(np.array(positions)))
    return q.numpy()


def failed_comparisons(q: np.ndarray) -> list[str]:
    """The averages off their exact values by more than TOLERANCE batch-means standard errors."""
    failures = []
    for name, (series, exact) in chain_observables(q).items():
        usable = len(series) // NUM_BATCHES * NUM_BATCHES
        batches = series[:usable].reshape(NUM_BATCHES, -1).mean(axis=1)
        error = batches.std(ddof=1) / math.sqrt(NUM_BATCHES)
        line = f"{name}: {series.mean():.5g} vs exact {exact:.5g} (standard error {error:.2g})"
        print(line)
        if not abs(series.mean() - exact) <= TOLERANCE * error:
            failures.append(line)
    return failures


@pytest.mark.slow
def test_independent_proposal_samples_boltzmann_exactly(chain_models, tmp_path):
    model = chain_models["independent"]
    q = run_chain(model, model, 3000, seed=11, path=tmp_path / "m.pt")
    assert failed_comparisons(q) == []


@pytest.mark.slow
def test_chain_check_fails_without_the_jacobian(chain_models, tmp_path):
    model = chain_models["independent"]
    q = run_chain(JacobianDropped(model), model, 1500, seed=12, path=tmp_path / "m.pt")
    assert failed_comparisons(q) != []


@pytest.mark.slow
@pytest.mark.parametrize("ratio_weight", [0.5, 0.002])
def test_mixture_samples_exactly_only_with_its_own_weight(chain_models, ratio_weight, tmp_path):
    mixture = ICMixtureProposal(chain_models["conditional"], chain_models["independent"], 0.5)
    # Proposals are drawn with weight 0.5; logQRatio is computed with ratio_weight.
    mixture.log_weight = math.log(ratio_weight)
    mixture.log_complement = math.log1p(-ratio_weight)
    q = run_chain(mixture, mixture, 3000, seed=13, path=tmp_path / "m.pt")
    failures = failed_comparisons(q)
    assert (failures == []) == (ratio_weight == 0.5)


def test_splines_invert_and_report_their_log_derivative():
    generator = torch.Generator().manual_seed(10)
    num_bins = 6
    x = torch.rand(500, 4, generator=generator, dtype=torch.float64)
    raw = 2.0 * torch.randn(500, 4, 3 * num_bins + 1, generator=generator, dtype=torch.float64)
    circular = torch.tensor([False, True, False, True])
    x.requires_grad_(True)
    y, log_derivative = rational_quadratic(x, raw, circular, inverse=False)
    (derivative,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(derivative.log(), log_derivative, atol=1e-9)
    back, log_inverse = rational_quadratic(y.detach(), raw, circular, inverse=True)
    assert torch.allclose(back, x.detach(), atol=1e-9)
    assert torch.allclose(log_inverse, -log_derivative.detach(), atol=1e-8)
    # Zero parameters are the identity; interval inputs outside [0, 1] have zero density.
    identity, log_one = rational_quadratic(x.detach(), torch.zeros_like(raw), circular, False)
    assert torch.allclose(identity, x.detach()) and log_one.abs().max() < 1e-12
    outside = torch.tensor([[-0.1, 0.5, 1.2, 0.5]], dtype=torch.float64)
    _, log_outside = rational_quadratic(outside, raw[:1], circular, inverse=True)
    assert torch.isinf(log_outside[0, [0, 2]]).all()
    assert torch.isfinite(log_outside[0, [1, 3]]).all()


def test_circular_splines_are_smooth_across_the_seam():
    generator = torch.Generator().manual_seed(11)
    raw = 2.0 * torch.randn(8, 1, 3 * 5 + 1, generator=generator, dtype=torch.float64)
    ends = torch.tensor([1e-12, 1.0 - 1e-12], dtype=torch.float64).repeat(8, 1)
    y, log_derivative = rational_quadratic(ends, raw.expand(8, 2, -1), torch.tensor(True), False)
    assert torch.allclose(log_derivative[:, 0], log_derivative[:, 1], atol=1e-8)
    seam_gap = torch.remainder(y[:, 0] - y[:, 1], 1.0)
    assert torch.all((seam_gap < 1e-8) | (seam_gap > 1 - 1e-8))
