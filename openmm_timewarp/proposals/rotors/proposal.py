"""The rotor proposal of one molecule (family ``"ic-rotor"``), built from the transferable network.

A peptide's slow degrees of freedom are its rotors: the torsions about rotatable bonds (backbone
psi and phi, the peptide bond, side-chain chi, methyl, amine, hydroxyl and carboxylate rotors).
Everything else (bond lengths, angles, the torsions of atoms placed beside a sibling, ring
torsions) is stiff and local. The proposal keeps the local geometry of the current state and
redraws the rotors, so only rotor distributions have to be learned, and those carry over between
peptides through the types of the atoms around each rotor.

Each proposal is one of two moves, chosen with probability ``rotor_weight`` by a noise number:

- *rotor move*: each rotor torsion (a Z-matrix torsion that is not relative to a sibling and
  whose bond is in no ring) is, with probability ``rotor_fraction`` (``backbone_fraction`` for the
  backbone's N-CA, CA-C and C-N bonds, the slow ones), drawn afresh from its own
  density ``q_k`` (a circular spline mixed with the uniform density), independent of the
  current state; all other internal
  coordinates stay. One noise number per rotor does both: ``v < f`` selects it and ``v / f``,
  uniform given the selection, draws it. Since bonds and angles stay, the
  Jacobian of the internal-coordinate map cancels and
  ``logQRatio = sum_k log q_k(tau_k) - log q_k(tau_k')`` (zero terms for rotors not redrawn).
  Redrawing a few rotors at a time keeps acceptance up where the rotors are correlated, which
  ``q``, a product over rotors, does not model.
- *local move*: a Gaussian random walk on all other internal coordinates (step ``walk_scale``
  times their learned thermal width), rotors stay: symmetric, so
  ``logQRatio = log J(q') - log J(q)``. It moves what the rotor move keeps; a step that leaves
  the domain (a bond <= 0, an angle outside (0, pi)) is rejected with ``logQRatio = -inf``.

Either move keeps the external frame (docs/contract.md). Choosing a move with fixed probability and
then accepting by its own ratio is a mixture of two reversible kernels, so the chain is exact.

:func:`rotor_proposal` turns a rotor network (``openmm_timewarp.proposals.rotors.network``) into an
:class:`ICRotorProposal` for one Topology: the parameters are computed once, so a proposal costs a
spline per rotor, no network.
"""

import torch
from openmm import app

from openmm_timewarp.proposals.ic.base import ZMatrixProposal
from openmm_timewarp.proposals.ic.zmatrix import ZMatrix, build_zmatrix
from openmm_timewarp.proposals.rotors.densities import (
    redraw_rotors,
    rotor_log_density,
)
from openmm_timewarp.proposals.rotors.features import (
    ROTOR,
    backbone_rotors,
    molecule_features,
)
from openmm_timewarp.proposals.rotors.moves import (
    local_walk,
    noise_numbers,
    peptide_vocabulary,
    register_walk,
    walk_steps,
)
from openmm_timewarp.proposals.rotors.network import molecule_parameters

DEFAULT_ROTOR_WEIGHT = 0.8
DEFAULT_ROTOR_FRACTION = 0.2
DEFAULT_UNIFORM_WEIGHT = 0.2
DEFAULT_BACKBONE_FRACTION = 0.7
DEFAULT_WALK_SCALE = 0.1


class ICRotorProposal(ZMatrixProposal):
    """The rotor proposal of one molecule (module docstring), its parameters fixed.

    ``raw [R, 3K + 1]`` are the rotors' spline parameters, ``steps [M - R]`` the walk's step of
    every other coordinate, ``rotor_weight`` the probability of a rotor move, ``rotor_fraction``
    the probability that a rotor move redraws a given rotor (``backbone_fraction`` for those that
    ``backbone`` ``[R]`` marks), ``uniform_weight`` the weight of the
    uniform density in each rotor's ``q_k`` (a floor that keeps every rotor state proposed, also
    where the learned density has little mass, as on molecules unlike the training set).
    """

    rotor_weight: float
    uniform_weight: float

    def __init__(
        self,
        zmatrix: ZMatrix,
        rotor: torch.Tensor,
        raw: torch.Tensor,
        steps: torch.Tensor,
        rotor_weight: float = DEFAULT_ROTOR_WEIGHT,
        rotor_fraction: float = DEFAULT_ROTOR_FRACTION,
        uniform_weight: float = DEFAULT_UNIFORM_WEIGHT,
        backbone: torch.Tensor | None = None,
        backbone_fraction: float = DEFAULT_BACKBONE_FRACTION,
    ) -> None:
        super().__init__(zmatrix)
        if not 0.0 < rotor_weight < 1.0:
            raise ValueError(f"rotor_weight must lie strictly between 0 and 1, got {rotor_weight}")
        for name, fraction in (("rotor", rotor_fraction), ("backbone", backbone_fraction)):
            if not 0.0 < fraction <= 1.0:
                raise ValueError(f"{name}_fraction must lie in (0, 1], got {fraction}")
        if not 0.0 <= uniform_weight < 1.0:
            raise ValueError(f"uniform_weight must lie in [0, 1), got {uniform_weight}")
        if rotor.shape != (zmatrix.num_internal,) or rotor.dtype != torch.bool:
            raise ValueError("rotor must mark each internal coordinate (bool)")
        if raw.shape[0] != int(rotor.sum()) or steps.shape != (int((~rotor).sum()),):
            raise ValueError("raw needs a row per rotor and steps an entry per other coordinate")
        self.rotor_weight = float(rotor_weight)
        if backbone is None:
            backbone = torch.zeros(raw.shape[0], dtype=torch.bool)
        if backbone.shape != (raw.shape[0],):
            raise ValueError("backbone must mark each rotor (bool)")
        fractions = torch.where(backbone, backbone_fraction, rotor_fraction).double()
        self.register_buffer("fractions", fractions)
        self.uniform_weight = float(uniform_weight)
        self.register_buffer("rotor_index", torch.nonzero(rotor).flatten())
        register_walk(self, ~rotor)
        self.register_buffer("raw", raw.double().clone())
        self.register_buffer("steps", steps.double().clone())

    def rotor_log_density(self, q: torch.Tensor) -> torch.Tensor:
        """``sum_k log q_k`` of the rotors of internal coordinates ``q [B, M]``."""
        return rotor_log_density(q[:, self.rotor_index], self.raw, self.uniform_weight).sum(-1)

    def propose_internal(
        self, q_chains: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num_proposals = noise.shape[1]
        log_q_chains = self.rotor_log_density(q_chains)
        q = q_chains.repeat_interleave(num_proposals, dim=0)
        normal, uniform = noise_numbers(noise, q.shape[0], q.dtype)
        rotor_move = uniform[:, self.num_internal] < self.rotor_weight

        # Rotor move: the selected rotors drawn from q_k.
        redrawn = redraw_rotors(
            q[:, self.rotor_index],
            uniform[:, self.rotor_index],
            self.fractions,
            self.raw,
            self.uniform_weight,
        )
        q_rotor = q.index_copy(1, self.rotor_index, redrawn)

        # Local move: a Gaussian step on every other coordinate, torsions wrapped to the circle.
        q_walk = local_walk(q, normal, self.walk_index, self.walk_is_torsion, self.steps)

        q_new = torch.where(rotor_move.unsqueeze(-1), q_rotor, q_walk)
        # A local move leaves the rotors, so their densities cancel; computing the new density
        # for every proposal keeps one formula for both moves. A step out of the domain of
        # internal coordinates gets -inf in the template.
        return q_new, log_q_chains.repeat_interleave(num_proposals) - self.rotor_log_density(q_new)


def rotor_proposal(
    network: torch.nn.Module,
    topology: app.Topology,
    rotor_weight: float = DEFAULT_ROTOR_WEIGHT,
    rotor_fraction: float = DEFAULT_ROTOR_FRACTION,
    uniform_weight: float = DEFAULT_UNIFORM_WEIGHT,
    walk_scale: float = DEFAULT_WALK_SCALE,
    backbone_fraction: float = DEFAULT_BACKBONE_FRACTION,
) -> ICRotorProposal:
    """The rotor proposal of ``network`` (a :class:`RotorNetwork`, scripted or not) for one
    peptide Topology; the walk's step is ``walk_scale`` times each coordinate's learned width."""
    vocabulary = peptide_vocabulary(topology, walk_scale)  # clear errors come first
    zmatrix = build_zmatrix(topology)
    features = molecule_features(topology, zmatrix, vocabulary)
    with torch.no_grad():
        parameters = molecule_parameters(network, features).double()
    rotor = features.coordinate_kinds == ROTOR
    steps = walk_steps(features.coordinate_kinds, parameters, ~rotor, walk_scale)
    return ICRotorProposal(
        zmatrix,
        rotor,
        parameters[rotor, :-2],
        steps,
        rotor_weight,
        rotor_fraction,
        uniform_weight,
        backbone_rotors(topology, features),
        backbone_fraction,
    )
