"""Z-matrix construction and the Cartesian <-> internal coordinate transform."""

import mdtraj as md
import numpy as np
import pytest
import torch
from openmm import app, unit

from openmm_timewarp.data.peptides import ONE_TO_THREE, build_peptide
from openmm_timewarp.proposals.ic.zmatrix import (
    InternalCoordinateTransform,
    build_zmatrix,
    torsion_angles,
)

torch.set_num_threads(1)


def positions_of(modeller: app.Modeller) -> torch.Tensor:
    return torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer)))


@pytest.fixture(scope="module")
def dipeptide() -> app.Modeller:
    return build_peptide("A")


@pytest.fixture(scope="module")
def all_residue_peptides() -> list[app.Modeller]:
    # Together these hold every one of the 20 residue kinds, both kinds of termini and every ring.
    return [build_peptide("ACDEFGHIKL"), build_peptide("MNPQRSTVWY", termini="zwitterionic")]


def perturbed(x: torch.Tensor, scale: float, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, *x.shape, generator=generator, dtype=x.dtype)
    return x.unsqueeze(0) + scale * noise


def test_peptides_cover_all_residue_kinds(all_residue_peptides):
    names = {r.name for m in all_residue_peptides for r in m.topology.residues()}
    # amber14 names histidine by its protonation (HID/HIE/HIP).
    names = {"HIS" if name in ("HID", "HIE", "HIP") else name for name in names}
    assert set(ONE_TO_THREE.values()) <= names


def test_round_trip_is_exact_in_float64(dipeptide, all_residue_peptides):
    for modeller in [dipeptide, *all_residue_peptides]:
        transform = InternalCoordinateTransform(build_zmatrix(modeller.topology))
        # Perturbed copies move ring atoms off their ring-closure geometry: still exact.
        x = perturbed(positions_of(modeller), 0.01, 4, seed=1)
        q, origin, rotation = transform.to_internal(x)
        assert q.shape == (4, 3 * x.shape[1] - 6)
        error = (transform.to_cartesian(q, origin, rotation) - x).abs().max()
        assert error < 1e-10


def test_internal_coordinates_are_rigid_motion_invariant(dipeptide):
    transform = InternalCoordinateTransform(build_zmatrix(dipeptide.topology))
    x = positions_of(dipeptide).unsqueeze(0)
    generator = torch.Generator().manual_seed(5)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64)).Q
    rotation = rotation * torch.linalg.det(rotation)  # a proper rotation
    shift = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    q, _, _ = transform.to_internal(x)
    q_moved, _, _ = transform.to_internal(x @ rotation.T + shift)
    assert torch.allclose(q, q_moved, atol=1e-12)
    # A mirror image keeps bonds and angles and flips the sign of every torsion.
    q_mirror, _, _ = transform.to_internal(-x)
    first_torsion = transform.num_bonds + transform.num_angles
    assert torch.allclose(q[:, :first_torsion], q_mirror[:, :first_torsion], atol=1e-12)
    assert torch.allclose(q[:, first_torsion:], -q_mirror[:, first_torsion:], atol=1e-12)


def test_torsion_sign_matches_mdtraj():
    points = torch.randn(1, 40, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    quadruples = np.arange(40).reshape(10, 4)
    topology = md.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    for i in range(40):
        topology.add_atom(f"C{i}", md.element.carbon, residue)
    trajectory = md.Trajectory(points.numpy(), topology)
    expected = md.compute_dihedrals(trajectory, quadruples, periodic=False)[0]
    a, b, c, d = (points[0, quadruples[:, i]] for i in range(4))
    assert np.allclose(torsion_angles(a, b, c, d).numpy(), expected, atol=1e-5)


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rz(alpha) Ry(beta) Rx(gamma): the first column is the spherical direction (alpha, beta)."""
    alpha, beta, gamma = angles
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)

    def rotation(c, s, axes):
        rows = {
            "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
            "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            "x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        }[axes]
        return torch.stack([torch.stack(row) for row in rows])

    return (
        rotation(torch.cos(alpha), torch.sin(alpha), "z")
        @ rotation(torch.cos(beta), torch.sin(beta), "y")
        @ rotation(torch.cos(gamma), torch.sin(gamma), "x")
    )


def test_log_jacobian_matches_full_cartesian_determinant(dipeptide):
    transform = InternalCoordinateTransform(build_zmatrix(dipeptide.topology))
    x = perturbed(positions_of(dipeptide), 0.005, 1, seed=2)
    q, _, _ = transform.to_internal(x)
    external = torch.tensor([0.1, -0.2, 0.3, 0.7, -0.4, 1.1], dtype=torch.float64)

    def cartesian(coordinates: torch.Tensor) -> torch.Tensor:
        origin, angles, internal = coordinates[:3], coordinates[3:6], coordinates[6:]
        rotation = euler_rotation(angles)
        return transform.to_cartesian(internal[None], origin[None], rotation[None]).flatten()

    jacobian = torch.autograd.functional.jacobian(cartesian, torch.cat([external, q[0]]))
    assert jacobian.shape == (3 * 22, 3 * 22)
    _, log_abs_det = torch.linalg.slogdet(jacobian)
    # The frame's own measure in these angles is |cos(beta)|; the rest is the internal part.
    expected = transform.log_det_jacobian(q)[0] + torch.log(torch.cos(external[4]).abs())
    assert log_abs_det.item() == pytest.approx(expected.item(), abs=1e-9)


def test_torsions_use_siblings_where_they_exist(dipeptide, all_residue_peptides):
    for modeller in [dipeptide, *all_residue_peptides]:
        zmatrix = build_zmatrix(modeller.topology)
        parent = {row[0]: row[1] for row in zmatrix.rows}
        placed_before: set[int] = set()
        rank = {row[0]: i for i, row in enumerate(zmatrix.rows)}
        for i, (atom, j, k, t) in enumerate(zmatrix.rows):
            if i >= 3:
                siblings = [s for s in placed_before if parent.get(s) == j and s != k]
                siblings = [s for s in siblings if rank[s] < i]
                if siblings:
                    assert parent[t] == j, zmatrix.labels[atom]
                for reference in (j, k, t):
                    assert reference in placed_before
            placed_before.add(atom)
        # Heavy atoms come before hydrogens in the tree: no hydrogen is a parent.
        assert all(zmatrix.heavy[j] for _, j, _, _ in zmatrix.rows[1:])


def test_dipeptide_free_torsions_are_the_rotors(dipeptide):
    zmatrix = build_zmatrix(dipeptide.topology)
    chain = [
        "-".join(zmatrix.labels[a].split(":")[2] for a in row)
        for row, sibling in zip(zmatrix.rows[3:], zmatrix.sibling_torsions(), strict=True)
        if not sibling
    ]
    # phi, psi, two omegas and the three methyl rotors; every other torsion is sibling-fixed.
    assert sorted(chain) == sorted(
        ["H1-CH3-C-O", "CA-N-C-CH3", "C-CA-N-C", "O-C-CA-N", "HB1-CB-CA-N", "C-N-C-CA",
         "H1-C-N-C"]
    )  # fmt: skip


def test_placement_is_batched_by_level(dipeptide):
    transform = InternalCoordinateTransform(build_zmatrix(dipeptide.topology))
    num_levels = len(transform.level_offsets) - 1
    assert num_levels <= 10  # 19 placed atoms in a handful of batched steps


def test_topology_without_bonds_gets_standard_bonds(dipeptide):
    bare = app.Topology()
    chain = bare.addChain()
    for residue in dipeptide.topology.residues():
        new_residue = bare.addResidue(residue.name, chain)
        for atom in residue.atoms():
            bare.addAtom(atom.name, atom.element, new_residue)
    assert build_zmatrix(bare) == build_zmatrix(dipeptide.topology)
    assert bare.getNumBonds() == 0  # the caller's Topology is left alone


def test_bad_topologies_are_refused():
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    carbon = app.element.carbon
    atoms = [topology.addAtom(f"C{i}", carbon, residue) for i in range(4)]
    with pytest.raises(ValueError, match="at least 3 atoms"):
        small = app.Topology()
        small_residue = small.addResidue("MOL", small.addChain())
        small.addAtom("C1", carbon, small_residue)
        build_zmatrix(small)
    topology.addBond(atoms[0], atoms[1])
    topology.addBond(atoms[2], atoms[3])
    with pytest.raises(ValueError, match="not connected"):
        build_zmatrix(topology)


def test_transform_scripts(dipeptide):
    transform = InternalCoordinateTransform(build_zmatrix(dipeptide.topology))
    scripted = torch.jit.script(transform)
    x = perturbed(positions_of(dipeptide), 0.01, 3, seed=3).float()
    q, origin, rotation = scripted.to_internal(x)
    assert (scripted.to_cartesian(q, origin, rotation) - x).abs().max() < 1e-5
