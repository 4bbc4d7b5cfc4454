"""The joint-backbone proposal of one molecule (family ``"ic-backbone"``), built from the
transferable network.

A peptide's slowest coordinates are its residues' (phi, psi) pairs, which are strongly coupled: a
product of one density per rotor mostly proposes clashes when it crosses basins. This proposal
draws a residue's pair together from a learned histogram on the torus conditioned on the residue
and its neighbours (``density``), and redraws one residue per move (optionally a few more), so
acceptance does not collapse as residues are added. Each proposal is one of three moves, chosen by
one noise number with fixed probabilities (a mixture of reversible kernels, so the chain is exact):

- *backbone move* (``backbone_weight``): one residue with a free angle, chosen uniformly by the
  choice number's residual, plus each other one with probability ``extra_residue_fraction``; its
  free angle(s) drawn from the residue's density, independent of the current angles. The Z-matrix
  rotor about N-CA (CA-C) differs from phi (psi) by sibling torsions about the same axis, which
  the move keeps, so setting the angle to ``a'`` moves the rotor by ``s (a' - a)`` (``s = +-1``
  found when the proposal is built). Nothing else moves, so
  ``logQRatio = sum log p(a) - log p(a')`` over the redrawn residues.
- *rotor move* (``rotor_weight``): every other rotor (side chains, omega, methyl, termini) redrawn
  with probability ``rotor_fraction`` from its spline, as in ``ic-rotor``.
- *local move*: a Gaussian walk on the non-rotor coordinates, as in ``ic-rotor``. Its ratio holds
  no backbone density, although it moves the true angles a little: it is symmetric by itself.

:func:`backbone_proposal` builds an :class:`ICBackboneProposal` for one Topology: the network runs
once, so a proposal costs table look-ups and splines, no network.
"""

import math

import torch
from openmm import app

from openmm_timewarp.proposals.backbone.density import (
    angle_bins,
    density_tables,
    draw_angles,
    log_density_at,
)
from openmm_timewarp.proposals.backbone.network import molecule_outputs
from openmm_timewarp.proposals.backbone.residues import (
    ResidueBackbone,
    backbone_residues,
    free_angle_rotors,
    peptide_chain,
    register_angle_buffers,
    residue_context,
)
from openmm_timewarp.proposals.ic.base import ZMatrixProposal
from openmm_timewarp.proposals.ic.zmatrix import ZMatrix, build_zmatrix, torsion_angles
from openmm_timewarp.proposals.rotors.densities import redraw_rotors, rotor_log_density, wrap_angle
from openmm_timewarp.proposals.rotors.features import ROTOR, molecule_features
from openmm_timewarp.proposals.rotors.moves import (
    local_walk,
    noise_numbers,
    peptide_vocabulary,
    register_walk,
    walk_steps,
)

DEFAULT_BACKBONE_WEIGHT = 0.4
DEFAULT_ROTOR_WEIGHT = 0.4
DEFAULT_EXTRA_RESIDUE_FRACTION = 0.0
DEFAULT_ROTOR_FRACTION = 0.2
DEFAULT_UNIFORM_WEIGHT = 0.15
DEFAULT_WALK_SCALE = 0.1


class ICBackboneProposal(ZMatrixProposal):
    """The joint-backbone proposal of one molecule (module docstring), its parameters fixed.

    ``residues`` are the movable residues (each with a free angle); ``log_density`` and ``cdf``
    their tables (``density.density_tables``); ``rotor [M]`` marks the rotors of the rotor move
    (every rotor but the free backbone angles'), ``raw`` their splines; ``steps`` the walk's step
    of each non-rotor coordinate (``walk [M]``).
    """

    backbone_weight: float
    rotor_weight: float
    extra_residue_fraction: float
    uniform_weight: float

    def __init__(
        self,
        zmatrix: ZMatrix,
        residues: list[ResidueBackbone],
        log_density: torch.Tensor,
        cdf: torch.Tensor,
        rotor: torch.Tensor,
        raw: torch.Tensor,
        walk: torch.Tensor,
        steps: torch.Tensor,
        backbone_weight: float = DEFAULT_BACKBONE_WEIGHT,
        rotor_weight: float = DEFAULT_ROTOR_WEIGHT,
        extra_residue_fraction: float = DEFAULT_EXTRA_RESIDUE_FRACTION,
        rotor_fraction: float = DEFAULT_ROTOR_FRACTION,
        uniform_weight: float = DEFAULT_UNIFORM_WEIGHT,
    ) -> None:
        super().__init__(zmatrix)
        if not (
            backbone_weight > 0.0 and rotor_weight >= 0.0 and backbone_weight + rotor_weight < 1
        ):
            raise ValueError(
                "backbone_weight must be positive, rotor_weight non-negative and their sum below 1 "
                f"(the rest is the local move), got {backbone_weight} and {rotor_weight}"
            )
        if not 0.0 <= extra_residue_fraction <= 1.0:
            raise ValueError(
                f"extra_residue_fraction must lie in [0, 1], got {extra_residue_fraction}"
            )
        if not 0.0 < rotor_fraction <= 1.0:
            raise ValueError(f"rotor_fraction must lie in (0, 1], got {rotor_fraction}")
        if not 0.0 <= uniform_weight < 1.0:
            raise ValueError(f"uniform_weight must lie in [0, 1), got {uniform_weight}")
        if not residues or not all(r.movable for r in residues):
            raise ValueError("a backbone proposal needs residues that each have a free angle")
        if log_density.shape[0] != len(residues) or cdf.shape[0] != len(residues):
            raise ValueError("log_density and cdf need one table per residue")
        if raw.shape[0] != int(rotor.sum()) or steps.shape != (int(walk.sum()),):
            raise ValueError("raw needs a row per rotor and steps an entry per walked coordinate")
        self.backbone_weight = float(backbone_weight)
        self.rotor_weight = float(rotor_weight)
        self.extra_residue_fraction = float(extra_residue_fraction)
        self.uniform_weight = float(uniform_weight)
        self.register_buffer("log_density", log_density.double().clone())
        self.register_buffer("cdf", cdf.double().clone())
        self.register_buffer("rotor_index", torch.nonzero(rotor).flatten())
        self.register_buffer("raw", raw.double().clone())
        fractions = torch.full(
            (self.rotor_index.shape[0],), float(rotor_fraction), dtype=torch.float64
        )
        self.register_buffer("rotor_fractions", fractions)
        register_walk(self, walk)
        self.register_buffer("steps", steps.double().clone())

        register_angle_buffers(self, residues)
        # The noise numbers of a residue: the first free angle's rotor (bin and first offset),
        # psi's rotor (second offset), and a walked coordinate's (extra selection); a move uses
        # the numbers of one kind only, so the kinds may share them.
        first = [r.phi_rotor if r.phi_rotor >= 0 else r.psi_rotor for r in residues]
        second = [
            r.psi_rotor if r.psi_rotor >= 0 else f for r, f in zip(residues, first, strict=True)
        ]
        self.register_buffer("first_noise", torch.tensor(first))
        self.register_buffer("second_noise", torch.tensor(second))
        self.register_buffer("selection_noise", self.walk_index[: len(residues)].clone())
        # One entry per free angle: its rotor coordinate, residue and whether it is psi.
        angles = [(r.phi_rotor, e, False) for e, r in enumerate(residues) if r.phi_rotor >= 0]
        angles += [(r.psi_rotor, e, True) for e, r in enumerate(residues) if r.psi_rotor >= 0]
        self.register_buffer("angle_rotor", torch.tensor([a[0] for a in angles]))
        self.register_buffer("angle_residue", torch.tensor([a[1] for a in angles]))
        self.register_buffer("angle_is_psi", torch.tensor([a[2] for a in angles]))
        # Each true angle is a fixed signed sum of Z-matrix torsions about its bond (the rotor
        # and sibling torsions); reading it so costs one product instead of placing the atoms.
        # Derived from the Z-matrix, so not in the state dict.
        self.register_buffer(
            "angle_coefficients", self._torsion_coefficients(2 * len(residues)), persistent=False
        )
        columns = torch.where(
            self.angle_is_psi, self.angle_residue + len(residues), self.angle_residue
        )
        first_torsion = self.transform.num_bonds + self.transform.num_angles
        self.register_buffer(
            "angle_sign", self.angle_coefficients[self.angle_rotor - first_torsion, columns].clone()
        )

    def _torsion_coefficients(self, num_columns: int) -> torch.Tensor:
        """``[T, 2E]``: the true ``(phi, psi)`` are ``wrap(torsions @ C)`` (columns phi then psi,
        zero for undefined angles). Dihedrals about one bond add, so ``C`` holds -1, 0 and 1; it
        is found by moving each torsion of a generic geometry (the relation is exact and
        geometry-independent) and checked on a second one."""
        generator = torch.Generator().manual_seed(0)
        transform = self.transform
        step = 0.3

        def generic() -> torch.Tensor:
            torsions = torch.rand(
                1, transform.num_torsions, generator=generator, dtype=torch.float64
            )
            return torch.cat(
                [
                    torch.full((1, transform.num_bonds), 0.15, dtype=torch.float64),
                    torch.full((1, transform.num_angles), 1.9, dtype=torch.float64),
                    torsions * 2.0 * math.pi - math.pi,
                ],
                dim=1,
            )

        q = generic()
        first_torsion = transform.num_bonds + transform.num_angles
        moved = q.repeat(transform.num_torsions, 1)
        moved[:, first_torsion:] += step * torch.eye(transform.num_torsions, dtype=torch.float64)
        before = torch.cat(self.backbone_angles(q), dim=1)
        after = torch.cat(self.backbone_angles(moved), dim=1)
        change = wrap_angle(after - before) / step
        coefficients = torch.round(change)
        check = generic()
        expected = torch.cat(self.backbone_angles(check), dim=1)
        error = wrap_angle(check[:, first_torsion:] @ coefficients - expected)
        if (
            coefficients.shape[1] != num_columns
            or not torch.allclose(change, coefficients, atol=1e-8)
            or not bool((coefficients.abs() <= 1).all())
            or float(error.abs().max()) > 1e-9
        ):
            raise RuntimeError("a backbone angle is not a signed sum of Z-matrix torsions")
        return coefficients

    def _free_angles(self, angles: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``[B, A]`` values of the free angles from ``(phi, psi) [B, E]``."""
        phi, psi = angles
        return torch.where(
            self.angle_is_psi, psi[:, self.angle_residue], phi[:, self.angle_residue]
        )

    @torch.jit.export
    def angles_from_torsions(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """True ``(phi, psi) [B, E]`` of internal coordinates ``q [B, M]`` (0 where undefined),
        as signed sums of their torsions (``angle_coefficients``); equal to
        :meth:`backbone_angles` up to rounding, at a fraction of its cost."""
        num_residues = self.log_density.shape[0]
        angles = wrap_angle(
            q[:, self.transform.num_bonds + self.transform.num_angles :] @ self.angle_coefficients
        )
        return angles[:, :num_residues], angles[:, num_residues:]

    def backbone_angles(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """True ``(phi, psi) [B, E]`` of internal coordinates ``q [B, M]`` (0 where undefined),
        from the positions they place (any frame: dihedrals do not depend on it)."""
        batch = q.shape[0]
        origin = torch.zeros(batch, 3, dtype=q.dtype, device=q.device)
        rotation = torch.eye(3, dtype=q.dtype, device=q.device).expand(batch, 3, 3)
        x = self.transform.to_cartesian(q, origin, rotation)
        phi = torsion_angles(
            x[:, self.phi_atoms[:, 0]],
            x[:, self.phi_atoms[:, 1]],
            x[:, self.phi_atoms[:, 2]],
            x[:, self.phi_atoms[:, 3]],
        )
        psi = torsion_angles(
            x[:, self.psi_atoms[:, 0]],
            x[:, self.psi_atoms[:, 1]],
            x[:, self.psi_atoms[:, 2]],
            x[:, self.psi_atoms[:, 3]],
        )
        return torch.where(self.defined_phi, phi, 0.0), torch.where(self.defined_psi, psi, 0.0)

    def draw_keys(self, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """``[B, E]`` key of each residue's draw: the fixed angle's bin where one angle is free."""
        grid = self.log_density.shape[1]
        only_phi = self.free_phi & ~self.free_psi
        only_psi = self.free_psi & ~self.free_phi
        keys = torch.where(only_phi, angle_bins(psi, grid), torch.zeros_like(psi, dtype=torch.long))
        return torch.where(only_psi, angle_bins(phi, grid), keys)

    def propose_internal(
        self, q_chains: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num_proposals = noise.shape[1]
        phi_chains, psi_chains = self.angles_from_torsions(q_chains)
        phi = phi_chains.repeat_interleave(num_proposals, dim=0)
        psi = psi_chains.repeat_interleave(num_proposals, dim=0)
        q = q_chains.repeat_interleave(num_proposals, dim=0)
        normal, uniform = noise_numbers(noise, q.shape[0], q.dtype)
        choice = uniform[:, self.num_internal]
        backbone_move = choice < self.backbone_weight
        rotor_move = ~backbone_move & (choice < self.backbone_weight + self.rotor_weight)

        # Backbone move: the chosen residues' free angles drawn from their densities.
        num_residues = self.log_density.shape[0]
        chosen = (choice / self.backbone_weight * num_residues).floor().long()
        residues = torch.arange(num_residues, device=q.device)
        selected = (residues == chosen.clamp_max(num_residues - 1).unsqueeze(-1)) | (
            uniform[:, self.selection_noise] < self.extra_residue_fraction
        )
        drawn_phi, drawn_psi = draw_angles(
            self.cdf,
            self.draw_keys(phi, psi),
            uniform[:, self.first_noise],
            uniform[:, self.second_noise],
            self.free_phi,
            self.free_psi,
        )
        new_phi = torch.where(selected & self.free_phi, drawn_phi, phi)
        new_psi = torch.where(selected & self.free_psi, drawn_psi, psi)
        change = wrap_angle(self._free_angles((new_phi, new_psi)) - self._free_angles((phi, psi)))
        rotors = wrap_angle(q[:, self.angle_rotor] + self.angle_sign * change)
        q_backbone = q.index_copy(1, self.angle_rotor, rotors)
        log_densities = log_density_at(
            self.log_density, torch.cat([phi, new_phi]), torch.cat([psi, new_psi])
        ).sum(-1)
        log_backbone = log_densities[: q.shape[0]] - log_densities[q.shape[0] :]

        # Rotor move: the other rotors, each redrawn with probability rotor_fraction from its
        # spline mixed with the uniform density (as ic-rotor's).
        redrawn = redraw_rotors(
            q[:, self.rotor_index],
            uniform[:, self.rotor_index],
            self.rotor_fractions,
            self.raw,
            self.uniform_weight,
        )
        q_rotor = q.index_copy(1, self.rotor_index, redrawn)
        # The densities of the current and the redrawn rotors in one evaluation of the splines.
        log_rotors = rotor_log_density(
            torch.cat([q[:, self.rotor_index], redrawn]), self.raw, self.uniform_weight
        ).sum(-1)
        log_rotor = log_rotors[: q.shape[0]] - log_rotors[q.shape[0] :]

        # Local move: a Gaussian step on every non-rotor coordinate, torsions on the circle.
        q_walk = local_walk(q, normal, self.walk_index, self.walk_is_torsion, self.steps)

        q_new = torch.where(
            backbone_move.unsqueeze(-1),
            q_backbone,
            torch.where(rotor_move.unsqueeze(-1), q_rotor, q_walk),
        )
        log_ratio = torch.where(
            backbone_move,
            log_backbone,
            torch.where(rotor_move, log_rotor, torch.zeros_like(log_rotor)),
        )
        return q_new, log_ratio


def backbone_proposal(
    network: torch.nn.Module,
    topology: app.Topology,
    backbone_weight: float = DEFAULT_BACKBONE_WEIGHT,
    rotor_weight: float = DEFAULT_ROTOR_WEIGHT,
    extra_residue_fraction: float = DEFAULT_EXTRA_RESIDUE_FRACTION,
    rotor_fraction: float = DEFAULT_ROTOR_FRACTION,
    uniform_weight: float = DEFAULT_UNIFORM_WEIGHT,
    walk_scale: float = DEFAULT_WALK_SCALE,
) -> ICBackboneProposal:
    """The joint-backbone proposal of ``network`` (a ``BackboneNetwork``, scripted or not) for one
    linear peptide; ``uniform_weight`` is the uniform density's weight in every backbone and rotor
    density (a floor that keeps every state proposed), the walk's step ``walk_scale`` times each
    coordinate's learned width. ValueError for anything but a linear peptide of amino acids,
    capped (ACE / NME, NHE) or zwitterionic."""
    vocabulary = peptide_vocabulary(topology, walk_scale)  # clear errors come first
    peptide_chain(topology)  # then for peptides that are not one linear chain
    zmatrix = build_zmatrix(topology)
    features = molecule_features(topology, zmatrix, vocabulary)
    residues = [r for r in backbone_residues(topology, zmatrix, features) if r.movable]
    if not residues:
        raise ValueError("the peptide has no free backbone angle to move")
    context = residue_context(topology, residues, features)
    with torch.no_grad():
        parameters, logits = molecule_outputs(network, features, context)
    parameters, logits = parameters.double(), logits.double()
    free_phi = torch.tensor([r.phi_rotor >= 0 for r in residues])
    free_psi = torch.tensor([r.psi_rotor >= 0 for r in residues])
    log_density, cdf = density_tables(
        logits,
        free_phi,
        free_psi,
        torch.tensor([r.phi_atoms is not None for r in residues]),
        torch.tensor([r.psi_atoms is not None for r in residues]),
        uniform_weight,
    )
    kinds = features.coordinate_kinds
    rotor = kinds == ROTOR
    rotor[free_angle_rotors(residues)] = False
    walk = kinds != ROTOR
    steps = walk_steps(kinds, parameters, walk, walk_scale)
    return ICBackboneProposal(
        zmatrix,
        residues,
        log_density,
        cdf,
        rotor,
        parameters[rotor, :-2],
        walk,
        steps,
        backbone_weight,
        rotor_weight,
        extra_residue_fraction,
        rotor_fraction,
        uniform_weight,
    )
