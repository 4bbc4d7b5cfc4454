"""Build peptides from a sequence and parameterise them for the project's MD protocol.

A peptide is built offline from its one-letter sequence with PeptideBuilder (any backbone angles),
protonated with OpenMM's ``Modeller.addHydrogens`` and parameterised with amber14-all and OBC2
implicit solvent. amber14's ``implicit/obc2.xml`` creates a ``CustomGBForce``, which is slow here,
so :func:`create_system` converts it to the native ``GBSAOBCForce`` with the same charges, radii and
scale factors (the two give the same energy).

Termini are either ``"capped"`` (ACE-...-NME, built as Gly-...-Gly whose end residues are renamed
and trimmed) or ``"zwitterionic"`` (NH3+ ... COO-, with the terminal OXT from PeptideBuilder).
"""

from __future__ import annotations

import functools
import io
import os
import random
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from openmm_timewarp.optional import require

Termini = Literal["capped", "zwitterionic"]
TERMINI: tuple[str, ...] = ("capped", "zwitterionic")

#: One-letter codes of the 20 standard amino acids and their residue names.
ONE_TO_THREE: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}  # fmt: skip

FORCEFIELD_FILES: tuple[str, ...] = ("amber14-all.xml", "implicit/obc2.xml")
FORCEFIELD_NAME = "amber14-all + OBC2 (GBSAOBCForce)"
PH = 7.0

# The offset that OpenMM's OBC implementation subtracts from every Born radius (nm).
_OBC_RADIUS_OFFSET = 0.009


@functools.cache
def peptide_atom_vocabulary() -> tuple[str, ...]:
    """Every atom name of amber14's protein residue templates (ff14SB), sorted: the atom types of
    transferable models (the ``peptide-atom`` scheme, ``openmm_timewarp.models.contract``).

    The templates cover the 20 amino acids with their protonation variants, N- and C-terminal
    forms and the ACE / NME / NHE caps: exactly the atoms a peptide built here can have.
    """
    path = Path(app.__file__).parent / "data" / "amber14" / "protein.ff14SB.xml"
    root = ElementTree.parse(path).getroot()
    return tuple(sorted({atom.get("name") for atom in root.iter("Atom") if atom.get("name")}))


def validate_sequence(sequence: str) -> str:
    """Return the sequence in upper case, or raise ValueError naming what is wrong with it."""
    if not isinstance(sequence, str) or not sequence.strip():
        raise ValueError(
            "The peptide sequence is empty: give one-letter codes, e.g. 'A' or 'AAGW'."
        )
    sequence = sequence.strip().upper()
    unknown = sorted({letter for letter in sequence if letter not in ONE_TO_THREE})
    if unknown:
        raise ValueError(
            f"Unknown residue letter(s) {', '.join(map(repr, unknown))} in sequence {sequence!r}; "
            f"use the one-letter codes of the 20 standard amino acids: {''.join(ONE_TO_THREE)}."
        )
    return sequence


def _backbone_angles(
    values: float | Sequence[float] | None, count: int, name: str, default: float
) -> list[float]:
    """One angle per residue: a scalar applies to all, None gives the default."""
    if values is None:
        return [default] * count
    if np.isscalar(values):
        return [float(values)] * count
    values = [float(v) for v in values]
    if len(values) != count:
        raise ValueError(
            f"Got {len(values)} {name} angles for {count} residues; give one or {count}."
        )
    return values


def build_peptide(
    sequence: str,
    termini: Termini = "capped",
    phi: float | Sequence[float] | None = None,
    psi: float | Sequence[float] | None = None,
    forcefield: app.ForceField | None = None,
) -> app.Modeller:
    """Build a protonated peptide with all hydrogens, ready for :func:`create_system`.

    Args:
        sequence: one-letter codes, N- to C-terminus (``"A"`` is alanine dipeptide when capped).
        termini: ``"capped"`` (ACE-...-NME) or ``"zwitterionic"`` (two residues or more).
        phi, psi: backbone torsions in degrees, one for all residues or one per residue of
            ``sequence``; the default is an extended chain (-120, 140). A zwitterion has no phi
            on its first residue and no psi on its last: those values are ignored.
        forcefield: used to pick protonation states; amber14-all + OBC2 by default.

    Returns:
        A Modeller holding the Topology and positions (nm).
    """
    sequence = validate_sequence(sequence)
    if termini not in TERMINI:
        raise ValueError(f"Unknown termini {termini!r}; use one of {TERMINI}.")
    if termini == "zwitterionic" and len(sequence) < 2:
        raise ValueError(
            "A zwitterionic peptide needs at least two residues (amber14 has no template for a "
            "free amino acid); use termini='capped' for a single residue."
        )
    phis = _backbone_angles(phi, len(sequence), "phi", -120.0)
    psis = _backbone_angles(psi, len(sequence), "psi", 140.0)

    capped = termini == "capped"
    letters = f"G{sequence}G" if capped else sequence
    # PeptideBuilder sets residue i's phi and the psi of residue i - 1 on residue i's geometry.
    residue_phis = [-120.0, *phis, -120.0] if capped else phis
    residue_psis = [140.0, *psis, 140.0] if capped else psis
    peptide_builder = require("PeptideBuilder")
    geometries = []
    for i, letter in enumerate(letters):
        geometry = peptide_builder.Geometry.geometry(letter)
        geometry.phi = residue_phis[i]
        geometry.psi_im1 = residue_psis[i - 1] if i > 0 else 140.0
        geometries.append(geometry)
    structure = peptide_builder.make_structure_from_geos(geometries)
    if not capped:
        peptide_builder.add_terminal_OXT(structure)

    pdb_text = io.StringIO()
    writer = require("Bio.PDB").PDBIO()
    writer.set_structure(structure)
    writer.save(pdb_text)
    pdb = app.PDBFile(io.StringIO(pdb_text.getvalue()))
    topology, positions = pdb.topology, pdb.positions
    if capped:
        topology, positions = _glycines_to_caps(topology, positions)

    modeller = app.Modeller(topology, positions)
    # addHydrogens starts hydrogens from random offsets (Python's `random`) and then minimises them;
    # a fixed seed and the Reference platform make the same sequence give the same coordinates.
    saved_random_state = random.getstate()
    random.seed(0)
    try:
        modeller.addHydrogens(
            forcefield or app.ForceField(*FORCEFIELD_FILES),
            pH=PH,
            platform=openmm.Platform.getPlatformByName("Reference"),
        )
    finally:
        random.setstate(saved_random_state)
    return modeller


def _glycines_to_caps(
    topology: app.Topology, positions: unit.Quantity
) -> tuple[app.Topology, unit.Quantity]:
    """Turn the terminal glycines into ACE (drop N, CA -> CH3) and NME (drop C and O, CA -> C)."""
    residues = list(topology.residues())
    first, last = residues[0], residues[-1]
    renamed = {(first, "CA"): "CH3", (last, "CA"): "C"}
    dropped = {(first, "N"), (last, "C"), (last, "O")}
    capped = app.Topology()
    chain = capped.addChain()
    kept_positions = []
    coordinates = positions.value_in_unit(unit.nanometer)
    for residue in residues:
        name = "ACE" if residue is first else "NME" if residue is last else residue.name
        new_residue = capped.addResidue(name, chain, residue.id)
        for atom in residue.atoms():
            if (residue, atom.name) in dropped:
                continue
            atom_name = renamed.get((residue, atom.name), atom.name)
            capped.addAtom(atom_name, atom.element, new_residue)
            kept_positions.append(coordinates[atom.index])
    capped.createStandardBonds()
    return capped, unit.Quantity(np.array(kept_positions), unit.nanometer)


def create_system(
    topology: app.Topology,
    forcefield: app.ForceField | None = None,
    native_gbsa: bool = True,
) -> openmm.System:
    """Parameterise with amber14-all + OBC2: no cutoff, no constraints, no virtual sites.

    With ``native_gbsa`` (the default) the ``CustomGBForce`` of ``implicit/obc2.xml`` is replaced by
    an equivalent native ``GBSAOBCForce``, which is much faster on the Reference platform.
    """
    forcefield = forcefield or app.ForceField(*FORCEFIELD_FILES)
    system = forcefield.createSystem(
        topology,
        nonbondedMethod=app.NoCutoff,
        constraints=None,
        rigidWater=False,
        removeCMMotion=False,
    )
    if native_gbsa:
        replace_custom_gb_with_gbsaobc(system)
    return system


def read_system(path: str | os.PathLike, topology: app.Topology) -> openmm.System:
    """A System serialized with ``XmlSerializer`` (``timewarp build --system`` writes one), for
    the atoms of ``topology`` in the same order."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    try:
        system = openmm.XmlSerializer.deserialize(text)
    except Exception as error:  # OpenMM raises its own exception types for malformed XML
        raise ValueError(f"{path} is not a serialized OpenMM System: {error}") from None
    if not isinstance(system, openmm.System):
        raise ValueError(f"{path} holds a serialized {type(system).__name__}, not a System")
    if system.getNumParticles() != topology.getNumAtoms():
        raise ValueError(
            f"the System in {path} has {system.getNumParticles()} particles but the peptide has "
            f"{topology.getNumAtoms()} atoms"
        )
    return system


def with_hbond_constraints(system: openmm.System, topology: app.Topology) -> openmm.System:
    """A copy of ``system`` with every bond to hydrogen constrained at its force-field length."""
    constrained = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    hydrogens = {atom.index for atom in topology.atoms() if atom.element == app.element.hydrogen}
    bonds = next(f for f in constrained.getForces() if isinstance(f, openmm.HarmonicBondForce))
    for index in range(bonds.getNumBonds()):
        i, j, length, _ = bonds.getBondParameters(index)
        if i in hydrogens or j in hydrogens:
            constrained.addConstraint(i, j, length)
    return constrained


def with_hydrogen_mass(
    system: openmm.System, topology: app.Topology, hydrogen_mass_amu: float
) -> openmm.System:
    """A copy of ``system`` with hydrogen mass repartitioning: every hydrogen bonded to a heavy
    atom weighs ``hydrogen_mass_amu`` and that atom gives up the mass it gained.

    The same rule as ``ForceField.createSystem(..., hydrogenMass=...)``, for a System that exists
    already (``timewarp build --system``); the total mass, and so the Boltzmann distribution of
    positions, is unchanged.
    """
    if not hydrogen_mass_amu > 0:
        raise ValueError(f"hydrogen_mass_amu must be positive, got {hydrogen_mass_amu}")
    repartitioned = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    hydrogen = app.element.hydrogen
    for heavy, light in topology.bonds():
        if heavy.element is hydrogen:
            heavy, light = light, heavy
        if light.element is not hydrogen or heavy.element in (hydrogen, None):
            continue
        gained = hydrogen_mass_amu - repartitioned.getParticleMass(light.index).value_in_unit(
            unit.dalton
        )
        heavy_mass = repartitioned.getParticleMass(heavy.index).value_in_unit(unit.dalton)
        if heavy_mass - gained <= 0:
            raise ValueError(
                f"a hydrogen mass of {hydrogen_mass_amu} amu leaves atom {heavy.index} "
                f"({heavy.name}) with no mass; choose a smaller one"
            )
        repartitioned.setParticleMass(light.index, hydrogen_mass_amu)
        repartitioned.setParticleMass(heavy.index, heavy_mass - gained)
    return repartitioned


def _expression_constant(expression: str, name: str) -> float:
    match = re.search(rf"\b{name}=([-+0-9.eE]+)", expression)
    if match is None:
        raise ValueError(f"The CustomGBForce does not define {name}; it is not an OBC2 force.")
    return float(match.group(1))


def replace_custom_gb_with_gbsaobc(system: openmm.System) -> None:
    """Replace the OBC2 ``CustomGBForce`` of ``implicit/obc2.xml`` by a native ``GBSAOBCForce``.

    The CustomGBForce stores per particle (charge, offset radius, scaled offset radius); the native
    force takes (charge, radius, scale factor) and applies the 0.009 nm offset itself. The
    dielectric constants are read from the custom energy expressions; both forces then compute ACE
    surface area and no salt.
    """
    custom_indices = [
        i for i, force in enumerate(system.getForces()) if isinstance(force, openmm.CustomGBForce)
    ]
    if len(custom_indices) != 1:
        raise ValueError(
            f"Expected one CustomGBForce (from implicit/obc2.xml), found {len(custom_indices)}."
        )
    custom = system.getForce(custom_indices[0])
    parameter_names = [custom.getPerParticleParameterName(i) for i in range(3)]
    if custom.getNumPerParticleParameters() != 3 or parameter_names != ["charge", "or", "sr"]:
        raise ValueError(
            f"Unexpected CustomGBForce parameters {parameter_names}; not an OBC2 force."
        )
    expressions = " ".join(
        custom.getEnergyTermParameters(i)[0] for i in range(custom.getNumEnergyTerms())
    )
    if "kappa=0;" not in expressions.replace(" ", "") + ";":
        raise ValueError(
            "The CustomGBForce has salt (kappa > 0), which GBSAOBCForce cannot represent."
        )
    if "28.3919551" not in expressions:
        raise ValueError(
            "The CustomGBForce has no ACE surface-area term; GBSAOBCForce always has one."
        )

    native = openmm.GBSAOBCForce()
    native.setSolventDielectric(_expression_constant(expressions, "solventDielectric"))
    native.setSoluteDielectric(_expression_constant(expressions, "soluteDielectric"))
    native.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    for i in range(custom.getNumParticles()):
        charge, offset_radius, scaled_offset_radius = custom.getParticleParameters(i)
        native.addParticle(
            charge, offset_radius + _OBC_RADIUS_OFFSET, scaled_offset_radius / offset_radius
        )
    native.setForceGroup(custom.getForceGroup())
    system.removeForce(custom_indices[0])
    system.addForce(native)


def backbone_torsions(
    topology: app.Topology,
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Atom indices of every defined phi (C-N-CA-C) and psi (N-CA-C-N) torsion, N- to C-terminus.

    Cap residues take part through their C (ACE) and N (NME) atoms, so capped alanine dipeptide has
    one phi and one psi.
    """
    residues = list(topology.residues())
    atoms = [{atom.name: atom.index for atom in residue.atoms()} for residue in residues]
    phis, psis = [], []
    for i, names in enumerate(atoms):
        if "CA" not in names or "N" not in names or "C" not in names:
            continue
        if i > 0 and "C" in atoms[i - 1]:
            phis.append((atoms[i - 1]["C"], names["N"], names["CA"], names["C"]))
        if i + 1 < len(atoms) and "N" in atoms[i + 1]:
            psis.append((names["N"], names["CA"], names["C"], atoms[i + 1]["N"]))
    return phis, psis
