"""Internal-coordinate proposal models: logQRatio, export, atom mapping and MH exactness."""

import math

import numpy as np
import pytest
import torch
from openmm import app, unit

from openmm_timewarp.contract import atom_types_for_topology, export, load_model
from openmm_timewarp.internal.proposals import (
    ICConditionalProposal,
    ICIndependentProposal,
    ICMixtureProposal,
    coordinate_bounds,
    proposal_metadata,
)
from openmm_timewarp.internal.zmatrix import build_zmatrix
from openmm_timewarp.peptides import FORCEFIELD_NAME, build_peptide

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
