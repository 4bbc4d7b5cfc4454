"""Equivalent atoms: proposals do not depend on how a structure labels them.

Deterministic checks of the groups and the canonical labelling; every internal-coordinate flow
family proposes the same (relabelled) configurations with the same logQRatio from a structure
whose groups are labelled with the other handedness; and, statistically, chains started from
relabelled structures accept as often as from the structure as built (bundled models), while a
model without the canonical labelling does not.
"""

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from openmm_timewarp import TimewarpIntegrator
from openmm_timewarp.data.peptides import build_peptide, create_system
from openmm_timewarp.models.contract import export, load_model
from openmm_timewarp.proposals.ic.equivalent import EquivalentAtomLabels
from openmm_timewarp.proposals.ic.families import (
    ICConditionalProposal,
    ICIndependentProposal,
    ICMixtureProposal,
    coordinate_bounds,
    rebuild_with_reference,
)
from openmm_timewarp.proposals.ic.zmatrix import build_zmatrix

SMALL = dict(num_couplings=2, hidden=32, num_bins=4)
EXAMPLE_PDB = "examples/alanine-dipeptide.pdb"
#: Zwitterions and capped peptides that together hold CH3, NH3+ (N-terminus, Lys), CH2, Arg,
#: Val/Leu methyl pairs and Asn/Gln amides.
PEPTIDES = (
    ("RK", "zwitterionic"),
    ("VL", "zwitterionic"),
    ("NQ", "capped"),
    ("GA", "zwitterionic"),
)


def group_summary(topology: app.Topology) -> set[tuple[str, str, tuple[str, ...]]]:
    zmatrix = build_zmatrix(topology)
    label = zmatrix.labels
    return {
        (g.kind, label[g.parent], tuple(label[m].split(":")[2] for m in g.members))
        for g in zmatrix.equivalent_groups
    }


def test_groups_of_alanine_dipeptide_are_its_three_methyls():
    pdb = app.PDBFile(EXAMPLE_PDB)
    assert group_summary(pdb.topology) == {
        ("triple", "0:ACE:CH3", ("H1", "H2", "H3")),
        ("triple", "1:ALA:CB", ("HB1", "HB2", "HB3")),
        ("triple", "2:NME:C", ("H1", "H2", "H3")),
    }


def test_groups_of_arg_lys_zwitterion():
    groups = group_summary(build_peptide("RK", "zwitterionic").topology)
    expected = {
        ("triple", "0:ARG:N", ("H", "H2", "H3")),
        ("triple", "0:ARG:CB", ("HB2", "HB3")),
        ("side", "0:ARG:CZ", ("NH1", "NH2")),
        ("side", "0:ARG:NH1", ("HH11", "HH12")),
        ("side", "0:ARG:NH2", ("HH21", "HH22")),
        ("triple", "1:LYS:NZ", ("HZ1", "HZ2", "HZ3")),
    }
    assert expected <= groups
    # The carboxylate turns freely about its bond to CA: no group.
    assert not any(parent == "1:LYS:C" for _, parent, _ in groups)


def test_outer_groups_come_first_and_swap_their_branches():
    zmatrix = build_zmatrix(build_peptide("V", "capped").topology)
    label = zmatrix.labels
    parents = [label[g.parent] for g in zmatrix.equivalent_groups]
    assert parents.index("1:VAL:CB") < parents.index("1:VAL:CG1")
    pair = next(g for g in zmatrix.equivalent_groups if label[g.parent] == "1:VAL:CB")
    swapped = {label[a]: label[b] for a, b in enumerate(pair.swap) if a != b}
    assert swapped["1:VAL:CG1"] == "1:VAL:CG2"
    assert swapped["1:VAL:HG11"] == "1:VAL:HG21"


def group_swaps(zmatrix, rng: np.random.Generator) -> list[np.ndarray]:
    """Each group's own exchange alone, then one random combination, as index vectors."""
    swaps = [np.array(g.swap) for g in zmatrix.equivalent_groups]
    combination = np.arange(zmatrix.num_atoms)
    for swap in swaps:
        if rng.random() < 0.5:
            combination = combination[swap]
    return [*swaps, combination]


@pytest.mark.parametrize(("sequence", "termini"), PEPTIDES)
def test_canonical_labelling_undoes_handedness_swaps(sequence, termini):
    modeller = build_peptide(sequence, termini)
    zmatrix = build_zmatrix(modeller.topology)
    x = torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer)))
    labels = EquivalentAtomLabels(zmatrix.equivalent_groups, zmatrix.num_atoms)
    labels.set_reference(x.unsqueeze(0))
    for swap in group_swaps(zmatrix, np.random.default_rng(0)):
        relabelled = x[torch.from_numpy(swap)].unsqueeze(0)
        canonical = relabelled[0, labels(relabelled)[0]]
        assert torch.equal(canonical, x)


def test_weights_saved_before_the_labelling_load_and_keep_it():
    """Training checkpoints written before equivalent atoms were labelled still resume."""
    modeller = build_peptide("RK", "zwitterionic")
    model = make_models(modeller, labelled=True)["independent"]
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("equivalent.")}
    fresh = make_models(modeller, labelled=True)["independent"]
    fresh.load_state_dict(old)
    assert torch.equal(fresh.equivalent.reference, model.equivalent.reference)
    assert fresh.equivalent.num_groups == len(build_zmatrix(modeller.topology).equivalent_groups)


def make_models(modeller: app.Modeller, labelled: bool) -> dict[str, torch.nn.Module]:
    zmatrix = build_zmatrix(modeller.topology)
    x = torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer))).unsqueeze(0)
    lower, upper = coordinate_bounds(zmatrix, x)
    reference = x if labelled else None
    torch.manual_seed(0)  # the layers' initial weights come from torch's generator
    models = {
        "conditional": ICConditionalProposal(
            zmatrix, lower, upper, **SMALL, seed=1, reference=reference
        ),
        "independent": ICIndependentProposal(
            zmatrix, lower, upper, **SMALL, seed=2, reference=reference
        ),
    }
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for model in models.values():
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    models["mixture"] = ICMixtureProposal(models["conditional"], models["independent"], 0.5)
    return models


def base_noise(component, x: torch.Tensor, atom_types: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` noise vectors ``[count, 3N]`` near the base point that ``component`` (a flow
    family) maps to ``x`` itself, so that its proposals lie near ``x``."""
    q, _, _ = component.internal(x.unsqueeze(0), atom_types)
    if isinstance(component, ICConditionalProposal):
        context = component.features(q)
    else:
        context = q.new_zeros(1, 0)
    u = component.to_unit(q)
    for coupling in component.flow.reversed_couplings:
        u, _ = coupling(u, context, True)
    centre = torch.special.ndtri(u.clamp(1e-4, 1.0 - 1e-4))
    generator = torch.Generator().manual_seed(4)
    noise = torch.randn(count, 3 * x.shape[0], generator=generator)
    noise[:, : component.num_internal] = centre + 0.02 * noise[:, : component.num_internal]
    return noise


def proposal_noise(name: str, models: dict, x: torch.Tensor, count: int) -> torch.Tensor:
    """Noise ``[count, N, 3]`` whose proposals lie near ``x``; for the mixture, the first half
    from its conditional component and the rest from its independent one."""
    atom_types = torch.arange(x.shape[0])
    if name == "mixture":
        half = count // 2
        noise = torch.cat(
            [
                base_noise(models["conditional"], x, atom_types, half),
                base_noise(models["independent"], x, atom_types, count - half),
            ]
        )
        # The component choice: the first spare number, through the normal CDF.
        spare = models["conditional"].num_internal
        noise[:half, spare] = -4.0
        noise[half:, spare] = 4.0
    else:
        noise = base_noise(models[name], x, atom_types, count)
    return noise.reshape(count, x.shape[0], 3)


def relabelling_errors(modeller: app.Modeller, labelled: bool) -> tuple[dict[str, float], float]:
    """For each family, over the relabellings ``p``: the largest difference between the proposals
    from ``x[p]`` and those from ``x`` relabelled by ``p``, or between their finite logQRatios
    (which must be finite for the same proposals); and the smallest fraction of finite ones."""
    zmatrix = build_zmatrix(modeller.topology)
    x = torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer))).float()
    atom_types = torch.arange(zmatrix.num_atoms)
    models = make_models(modeller, labelled)
    errors = {}
    finite_fraction = 1.0
    for name, model in models.items():
        with torch.no_grad():
            noise = proposal_noise(name, models, x, 64)
            proposals, log_q_ratio = model(x, atom_types, noise)
            finite = torch.isfinite(log_q_ratio)
            finite_fraction = min(finite_fraction, float(finite.float().mean()))
            errors[name] = 0.0
            for swap in group_swaps(zmatrix, np.random.default_rng(1)):
                index = torch.from_numpy(swap)
                swapped, swapped_ratio = model(x[index], atom_types, noise)
                assert torch.equal(finite, torch.isfinite(swapped_ratio))
                differences = [(swapped - proposals[:, index]).abs().max().item()]
                if bool(finite.any()):
                    differences.append((swapped_ratio - log_q_ratio)[finite].abs().max().item())
                errors[name] = max(errors[name], *differences)
    return errors, finite_fraction


@pytest.mark.parametrize(("sequence", "termini"), (("A", "capped"), *PEPTIDES))
def test_every_ic_family_proposes_alike_whatever_the_labelling(sequence, termini):
    errors, finite_fraction = relabelling_errors(build_peptide(sequence, termini), labelled=True)
    assert finite_fraction > 0.9  # proposals near the start keep its handedness
    assert max(errors.values()) < 1e-4, errors


def test_without_canonical_labels_the_relabelled_structure_is_proposed_for_differently():
    """The check above fails for the same models built without the reference labelling."""
    errors, _ = relabelling_errors(build_peptide("RK", "zwitterionic"), labelled=False)
    assert min(errors.values()) > 1e-2, errors


# ---- chains: acceptance per labelling, from a minimised start ---------------------------------


def minimised(system: openmm.System, positions) -> np.ndarray:
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0)
    state = context.getState(getPositions=True)
    return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def acceptance(
    model, topology, system, start, steps=2000, blocks=20, seed=5
) -> tuple[float, float]:
    """A chain's acceptance and its standard error by batch means over ``blocks`` blocks."""
    integrator = TimewarpIntegrator(model, 310 * unit.kelvin, topology=topology, seed=seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(start * unit.nanometer)
    rates = []
    for _ in range(blocks):
        before_accepted, before_proposed = integrator.getNumAccepted(), integrator.getNumProposed()
        integrator.step(steps // blocks)
        rates.append(
            (integrator.getNumAccepted() - before_accepted)
            / (integrator.getNumProposed() - before_proposed)
        )
    rates = np.array(rates)
    return float(rates.mean()), float(rates.std(ddof=1) / np.sqrt(blocks))


def single_swaps(topology: app.Topology, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each exchange of two members of a group (a pair with its branches), and a random
    combination of them, as index vectors over the Topology's atoms."""
    zmatrix = build_zmatrix(topology)
    label = zmatrix.labels
    swaps = {}
    for group in zmatrix.equivalent_groups:
        members = group.members
        if len(members) == 2:
            swaps[f"{label[members[0]]}/{label[members[1]].split(':')[2]}"] = np.array(group.swap)
            continue
        for i, j in ((0, 1), (0, 2), (1, 2)):
            swap = np.arange(zmatrix.num_atoms)
            swap[[members[i], members[j]]] = swap[[members[j], members[i]]]
            swaps[f"{label[members[i]]}/{label[members[j]].split(':')[2]}"] = swap
    combination = np.arange(zmatrix.num_atoms)
    for swap in swaps.values():
        if rng.random() < 0.5:
            combination = combination[swap]
    swaps["random combination"] = combination
    return swaps


def acceptance_gaps(model, topology, system, start, steps, chosen) -> list[tuple]:
    """``(labelling, acceptance, acceptance as built, 3 standard errors of the difference)`` for
    the labellings that ``chosen`` picks from ``single_swaps``."""
    rate, error = acceptance(model, topology, system, start, steps)
    assert rate > 0.0
    swaps = single_swaps(topology, np.random.default_rng(2))
    gaps = []
    for name in chosen(list(swaps)):
        swapped_rate, swapped_error = acceptance(model, topology, system, start[swaps[name]], steps)
        gaps.append((name, swapped_rate, rate, 3.0 * np.hypot(error, swapped_error)))
    return gaps


def within(gap: tuple) -> bool:
    _, swapped_rate, rate, tolerance = gap
    return abs(swapped_rate - rate) < tolerance


@pytest.fixture(scope="module")
def alanine_dipeptide():
    pdb = app.PDBFile(EXAMPLE_PDB)
    system = create_system(pdb.topology)
    return pdb.topology, system, minimised(system, pdb.positions)


@pytest.mark.slow
def test_bundled_model_accepts_alike_for_every_labelling(alanine_dipeptide):
    topology, system, start = alanine_dipeptide
    gaps = acceptance_gaps("alanine-dipeptide", topology, system, start, 2000, lambda names: names)
    assert len(gaps) == 10
    assert all(within(gap) for gap in gaps), gaps


@pytest.mark.slow
def test_bundled_model_without_canonical_labels_fails_the_same_test(alanine_dipeptide, tmp_path):
    topology, system, start = alanine_dipeptide
    scripted, metadata = load_model("alanine-dipeptide")
    unlabelled = rebuild_with_reference(scripted.proposal, metadata, topology, None)
    path = export(unlabelled, tmp_path / "unlabelled.pt", metadata, torch.tensor(start).float())
    gaps = acceptance_gaps(
        path, topology, system, start, 1000, lambda names: ["0:ACE:H2/H3", "2:NME:H1/H3"]
    )
    assert not any(within(gap) for gap in gaps), gaps


@pytest.mark.slow
@pytest.mark.parametrize(("sequence", "termini"), PEPTIDES)
def test_transferable_rotor_model_accepts_alike_for_every_labelling(sequence, termini):
    """The rotor family evaluates densities of rotor torsions only and walks symmetrically on
    the rest, so it needs no canonical labelling: checked on a third of the single swaps (the
    relabelling tests above cover every one for the flows) and a random combination."""
    modeller = build_peptide(sequence, termini)
    system = create_system(modeller.topology)
    start = minimised(system, modeller.positions)
    gaps = acceptance_gaps(
        "dipeptides",
        modeller.topology,
        system,
        start,
        1000,
        lambda names: [*names[:-1:3], "random combination"],
    )
    assert all(within(gap) for gap in gaps), gaps


@pytest.mark.slow
def test_openmmtools_alanine_dipeptide_moves_with_the_bundled_model():
    """Its own prmtop, atom order and force field (ff96 + OBC): less acceptance than on amber14,
    but the chain moves (docs/benchmarks.md has the figures)."""
    testsystems = pytest.importorskip("openmmtools.testsystems")
    reference = testsystems.AlanineDipeptideImplicit(constraints=None)
    start = minimised(reference.system, reference.positions)
    rate, error = acceptance(
        "alanine-dipeptide", reference.topology, reference.system, start, steps=3000
    )
    assert rate > 3.0 * error > 0.0
