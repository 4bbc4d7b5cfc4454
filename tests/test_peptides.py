"""Building and parameterising peptides: every residue, both termini, native GBSA equivalence."""

from __future__ import annotations

import math

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest

from openmm_timewarp.data.peptides import (
    FORCEFIELD_FILES,
    ONE_TO_THREE,
    backbone_torsions,
    build_peptide,
    create_system,
    validate_sequence,
)

FORCEFIELD = app.ForceField(*FORCEFIELD_FILES)
REFERENCE = openmm.Platform.getPlatformByName("Reference")
# Net charge at pH 7 (histidine neutral, as Modeller picks HID/HIE).
RESIDUE_CHARGE = {"D": -1, "E": -1, "K": 1, "R": 1}


def energy(system: openmm.System, positions, groups: int = -1) -> float:
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), REFERENCE)
    context.setPositions(positions)
    state = context.getState(getEnergy=True, groups=groups)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def net_charge(system: openmm.System) -> float:
    (nonbonded,) = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    return sum(
        nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
        for i in range(nonbonded.getNumParticles())
    )


@pytest.mark.parametrize("termini", ["capped", "zwitterionic"])
@pytest.mark.parametrize("letter", sorted(ONE_TO_THREE))
def test_every_residue_builds_and_parameterises(letter: str, termini: str) -> None:
    # A zwitterion of the residue twice covers its N- and C-terminal templates.
    sequence = letter if termini == "capped" else letter * 2
    modeller = build_peptide(sequence, termini, forcefield=FORCEFIELD)
    residues = [r.name for r in modeller.topology.residues()]
    expected = ONE_TO_THREE[letter]
    if termini == "capped":
        assert residues[0] == "ACE" and residues[-1] == "NME"
        assert residues[1] in (expected, "HID", "HIE", "HIP", "CYX", "CYM")
    else:
        assert len(residues) == 2
    system = create_system(modeller.topology, FORCEFIELD)
    assert system.getNumConstraints() == 0
    forces = {type(f).__name__ for f in system.getForces()}
    assert "GBSAOBCForce" in forces and "CustomGBForce" not in forces
    expected_charge = RESIDUE_CHARGE.get(letter, 0) * len(sequence)
    assert net_charge(system) == pytest.approx(expected_charge, abs=1e-6)
    assert math.isfinite(energy(system, modeller.positions))


@pytest.mark.parametrize(
    ("sequence", "termini"), [("A", "capped"), ("ACDEFGHIKLMNPQRSTVWY", "zwitterionic")]
)
def test_native_gbsa_matches_custom_gb(sequence: str, termini: str) -> None:
    modeller = build_peptide(sequence, termini, forcefield=FORCEFIELD)
    custom = create_system(modeller.topology, FORCEFIELD, native_gbsa=False)
    native = create_system(modeller.topology, FORCEFIELD)
    for system, name in ((custom, "CustomGBForce"), (native, "GBSAOBCForce")):
        for force in system.getForces():
            force.setForceGroup(1 if type(force).__name__ == name else 0)
    # The solvation term alone and the total must agree; the total is a few hundred kJ/mol.
    assert energy(native, modeller.positions, {1}) == pytest.approx(
        energy(custom, modeller.positions, {1}), abs=1e-3
    )
    assert energy(native, modeller.positions) == pytest.approx(
        energy(custom, modeller.positions), abs=1e-3
    )


def test_capped_alanine_dipeptide_has_22_atoms_and_the_requested_angles() -> None:
    modeller = build_peptide("A", phi=60.0, psi=40.0, forcefield=FORCEFIELD)
    assert modeller.topology.getNumAtoms() == 22
    phis, psis = backbone_torsions(modeller.topology)
    assert len(phis) == 1 and len(psis) == 1
    positions = np.array(modeller.positions.value_in_unit(unit.nanometer))
    import mdtraj

    trajectory = mdtraj.Trajectory(positions[None], mdtraj.Topology.from_openmm(modeller.topology))
    angles = np.degrees(mdtraj.compute_dihedrals(trajectory, np.array(phis + psis)))[0]
    np.testing.assert_allclose(angles, [60.0, 40.0], atol=1.0)


def test_per_residue_angles_and_determinism() -> None:
    first = build_peptide("AGA", phi=[-60, -70, -80], psi=[-40, -45, -50], forcefield=FORCEFIELD)
    second = build_peptide("AGA", phi=[-60, -70, -80], psi=[-40, -45, -50], forcefield=FORCEFIELD)
    np.testing.assert_array_equal(
        np.array(first.positions.value_in_unit(unit.nanometer)),
        np.array(second.positions.value_in_unit(unit.nanometer)),
    )
    with pytest.raises(ValueError, match="2 phi angles for 3 residues"):
        build_peptide("AGA", phi=[-60, -70])


@pytest.mark.parametrize(
    ("sequence", "message"),
    [("", "empty"), ("   ", "empty"), ("AXA", "Unknown residue letter"), ("AB1", "'1'")],
)
def test_bad_sequences_are_refused(sequence: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_sequence(sequence)


def test_bad_termini_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown termini"):
        build_peptide("A", termini="amidated")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least two residues"):
        build_peptide("A", termini="zwitterionic")


def test_lower_case_sequence_is_accepted() -> None:
    assert validate_sequence(" ag ") == "AG"
