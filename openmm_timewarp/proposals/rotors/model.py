"""Transferable rotor proposals (family ``"ic-rotor"``): one network, any peptide Topology.

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

:class:`RotorNetwork` is the transferable part. It maps each internal coordinate of a molecule to
its parameters (a rotor's spline; another coordinate's mean and log width, the width setting the
walk's step) from features of the coordinate's atoms: the atom name (the ``peptide-atom``
vocabulary; a name absent from the training set contributes nothing), element, bonded heavy atoms
and hydrogens, ring membership, and the set of atom names of its residue (which tells residues
apart without a residue vocabulary). :func:`rotor_proposal` turns the network into an
:class:`ICRotorProposal` for one Topology: the parameters are computed once, so a proposal costs a
spline per rotor, no network. :func:`model_file_for_topology` does this for a transferable
model file and caches the exported result, which is what ``TimewarpIntegrator`` and the
many-chain sampler load.
"""

import hashlib
import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from openmm import app
from torch import nn

from openmm_timewarp.files import file_sha256
from openmm_timewarp.models.contract import (
    ModelMetadata,
    atom_types_for_topology,
    export,
    load_metadata,
    load_model,
    resolve_model_path,
    save_module,
)
from openmm_timewarp.proposals.ic import families as proposals_module
from openmm_timewarp.proposals.ic import splines
from openmm_timewarp.proposals.ic import zmatrix as zmatrix_module
from openmm_timewarp.proposals.ic.families import ZMatrixProposal
from openmm_timewarp.proposals.ic.splines import num_spline_parameters, rational_quadratic
from openmm_timewarp.proposals.ic.zmatrix import (
    InternalCoordinateTransform,
    ZMatrix,
    bond_graph,
    build_zmatrix,
)

FAMILY = "ic-rotor"
ELEMENTS = ("H", "C", "N", "O", "S")
#: Kinds of internal coordinate; the network tells them apart.
BOND, ANGLE, FIXED_TORSION, ROTOR = range(4)
GRAPH_FEATURES = len(ELEMENTS) + 3
#: Centre and scale of the network's mean output, and initial log width, per non-rotor kind.
MEAN_CENTRE = (0.12, 1.9, 0.0)
MEAN_SCALE = (0.03, 0.3, 2.0)
LOG_WIDTH_CENTRE = (math.log(0.005), math.log(0.08), math.log(0.15))
DEFAULT_ROTOR_WEIGHT = 0.8
DEFAULT_ROTOR_FRACTION = 0.2
DEFAULT_UNIFORM_WEIGHT = 0.2
DEFAULT_BACKBONE_FRACTION = 0.7
#: Atom names of the backbone bonds whose rotors are the slow ones (phi, psi, omega).
BACKBONE_BONDS = frozenset({frozenset(("N", "CA")), frozenset(("CA", "C")), frozenset(("C", "N"))})
DEFAULT_WALK_SCALE = 0.1


def _ring_bonds(neighbours: list[set[int]]) -> set[frozenset[int]]:
    """Bonds on a ring: their atoms stay connected when the bond itself is removed."""
    rings = set()
    for a, bonded in enumerate(neighbours):
        for b in bonded:
            if a > b:
                continue
            seen, frontier = {a}, [a]
            while frontier and b not in seen:
                atom = frontier.pop()
                for nxt in neighbours[atom]:
                    if nxt not in seen and {atom, nxt} != {a, b}:
                        seen.add(nxt)
                        frontier.append(nxt)
            if b in seen:
                rings.add(frozenset((a, b)))
    return rings


@dataclass(frozen=True)
class MoleculeFeatures:
    """What :class:`RotorNetwork` reads of one molecule, in Z-matrix coordinate order."""

    names: torch.Tensor  # [N] peptide-atom code of each atom (Topology order)
    graph: torch.Tensor  # [N, GRAPH_FEATURES]
    residue_names: torch.Tensor  # [N, V] the atom names of each atom's residue (0/1)
    coordinate_atoms: torch.Tensor  # [M, 4] atoms of each coordinate, -1 where it has fewer
    coordinate_kinds: torch.Tensor  # [M] BOND, ANGLE, FIXED_TORSION or ROTOR


def peptide_atom_codes(topology: app.Topology, vocabulary: Sequence[str]) -> torch.Tensor:
    """The ``peptide-atom`` code of every atom; ValueError for residues that are not peptide."""
    metadata = ModelMetadata(
        name=FAMILY,
        family=FAMILY,
        tau_ps=1.0,
        temperature_K=300.0,
        forcefield="",
        atom_type_scheme="peptide-atom",
        atom_types=list(vocabulary),
    )
    return torch.from_numpy(atom_types_for_topology(topology, metadata))


def molecule_features(
    topology: app.Topology, zmatrix: ZMatrix, vocabulary: Sequence[str]
) -> MoleculeFeatures:
    """The network's inputs for ``topology`` and its Z-matrix (``vocabulary``: peptide-atom names).

    Raises ValueError (from the ``peptide-atom`` scheme) for atoms that are not peptide atoms.
    """
    names = peptide_atom_codes(topology, vocabulary)
    atoms = list(topology.atoms())
    neighbours = bond_graph(topology)
    rings = _ring_bonds(neighbours)
    heavy = [atom.element is not None and atom.element.symbol != "H" for atom in atoms]
    graph = torch.zeros(len(atoms), GRAPH_FEATURES)
    for atom in atoms:
        a = atom.index
        symbol = atom.element.symbol if atom.element is not None else ""
        if symbol in ELEMENTS:
            graph[a, ELEMENTS.index(symbol)] = 1.0
        graph[a, len(ELEMENTS)] = sum(heavy[b] for b in neighbours[a]) / 4.0
        graph[a, len(ELEMENTS) + 1] = sum(not heavy[b] for b in neighbours[a]) / 3.0
        graph[a, len(ELEMENTS) + 2] = float(any(frozenset((a, b)) in rings for b in neighbours[a]))
    residue_names = torch.zeros(len(atoms), len(vocabulary))
    for residue in topology.residues():
        members = [atom.index for atom in residue.atoms()]
        for a in members:
            residue_names[a, names[members]] = 1.0
    rows = zmatrix.rows
    sibling = [False, False, False] + zmatrix.sibling_torsions()
    coordinate_atoms, kinds = [], []
    for a, j, _, _ in rows[1:]:
        coordinate_atoms.append((a, j, -1, -1))
        kinds.append(BOND)
    for a, j, k, _ in rows[2:]:
        coordinate_atoms.append((a, j, k, -1))
        kinds.append(ANGLE)
    for row, (a, j, k, t) in enumerate(rows[3:], start=3):
        rotor = not sibling[row] and frozenset((j, k)) not in rings
        coordinate_atoms.append((a, j, k, t))
        kinds.append(ROTOR if rotor else FIXED_TORSION)
    return MoleculeFeatures(
        names=names,
        graph=graph,
        residue_names=residue_names,
        coordinate_atoms=torch.tensor(coordinate_atoms, dtype=torch.int64),
        coordinate_kinds=torch.tensor(kinds, dtype=torch.int64),
    )


class RotorNetwork(nn.Module):
    """Parameters of every internal coordinate of a molecule from the types of its atoms.

    ``forward`` returns ``[M, 3K + 3]``: a circular spline's ``3K + 1`` raw parameters, then the
    mean and log width (columns ``-2`` and ``-1``). Rotors use the spline; the other kinds the mean
    and width. ``known_names`` marks the atom names seen in training: other names contribute no
    embedding, so the network falls back on element and bonding for them.
    """

    num_bins: int

    def __init__(
        self, vocabulary_size: int, hidden: int = 128, num_bins: int = 16, atom_dim: int = 32
    ) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.register_buffer("known_names", torch.zeros(vocabulary_size, dtype=torch.bool))
        self.name_embedding = nn.Embedding(vocabulary_size, atom_dim)
        self.atom = nn.Linear(atom_dim + GRAPH_FEATURES, atom_dim)
        self.residue = nn.Linear(vocabulary_size, atom_dim)
        inputs = 4 + 4 * atom_dim + 2 * atom_dim
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, num_spline_parameters(num_bins) + 2),
        )
        # A fresh network proposes uniform rotors and the initial widths.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self,
        names: torch.Tensor,
        graph: torch.Tensor,
        residue_names: torch.Tensor,
        coordinate_atoms: torch.Tensor,
        coordinate_kinds: torch.Tensor,
    ) -> torch.Tensor:
        known = self.known_names[names].unsqueeze(-1).to(graph.dtype)
        atom = self.atom(torch.cat([self.name_embedding(names) * known, graph], dim=-1))
        atom = torch.cat([torch.nn.functional.silu(atom), torch.zeros_like(atom[:1])])
        padded = torch.where(coordinate_atoms < 0, atom.shape[0] - 1, coordinate_atoms)
        residue = torch.nn.functional.silu(
            self.residue(residue_names * self.known_names.to(graph.dtype))
        )
        second = coordinate_atoms[:, 1]
        third = torch.where(coordinate_atoms[:, 2] < 0, second, coordinate_atoms[:, 2])
        features = torch.cat(
            [
                torch.nn.functional.one_hot(coordinate_kinds, 4).to(graph.dtype),
                atom[padded].reshape(coordinate_atoms.shape[0], -1),
                residue[second],
                residue[third],
            ],
            dim=-1,
        )
        return self.net(features)


def molecule_parameters(network: torch.nn.Module, features: MoleculeFeatures) -> torch.Tensor:
    """``network``'s parameters ``[M, 3K + 3]`` of every internal coordinate of one molecule."""
    return network(
        features.names,
        features.graph,
        features.residue_names,
        features.coordinate_atoms,
        features.coordinate_kinds,
    )


def log_widths(kinds: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
    """Log thermal width of each non-rotor coordinate (``kinds`` BOND, ANGLE, FIXED_TORSION)."""
    centre = torch.tensor(LOG_WIDTH_CENTRE, dtype=parameters.dtype, device=parameters.device)
    return centre[kinds] + parameters[:, -1]


def _unit_torsion(torsion: torch.Tensor) -> torch.Tensor:
    return torch.remainder((torsion + math.pi) / (2.0 * math.pi), 1.0)


def rotor_log_density(
    torsions: torch.Tensor, raw: torch.Tensor, uniform_weight: float = 0.0
) -> torch.Tensor:
    """``log q_k(tau_k)`` per rotor (per radian) of torsions ``[B, R]``: the spline of
    ``raw [R, 3K + 1]``, mixed with the uniform density by ``uniform_weight``."""
    circular = torch.ones_like(torsions, dtype=torch.bool)
    _, log_derivative = rational_quadratic(
        _unit_torsion(torsions), raw.expand(torsions.shape[0], -1, -1), circular, True
    )
    log_spline = log_derivative - math.log(2.0 * math.pi)
    if uniform_weight <= 0.0:
        return log_spline
    return torch.logaddexp(
        log_spline + math.log1p(-uniform_weight),
        torch.full_like(log_spline, math.log(uniform_weight / (2.0 * math.pi))),
    )


def non_rotor_log_density(
    values: torch.Tensor, kinds: torch.Tensor, parameters: torch.Tensor
) -> torch.Tensor:
    """Gaussian ``log N(q; mean, width)`` per coordinate of ``values [B, M']`` (torsions on the
    circle, by their wrapped difference); ``parameters [M', 3K + 3]`` from the network."""
    kind = kinds.clamp_max(FIXED_TORSION)
    centre = torch.tensor(MEAN_CENTRE, dtype=values.dtype, device=values.device)[kind]
    scale = torch.tensor(MEAN_SCALE, dtype=values.dtype, device=values.device)[kind]
    mean = centre + scale * parameters[:, -2]
    log_width = log_widths(kind, parameters)
    difference = values - mean
    torsion = kinds == FIXED_TORSION
    difference = torch.where(
        torsion, torch.remainder(difference + math.pi, 2.0 * math.pi) - math.pi, difference
    )
    return -0.5 * (difference / log_width.exp()) ** 2 - log_width - 0.5 * math.log(2.0 * math.pi)


class RotorTrainingModel(nn.Module):
    """:class:`RotorNetwork` with the molecules it is trained on, for ``training.train_peptides``.

    ``training_nll(x_cond, x_next, atom_types)`` is ``-log`` of the rotor densities and of the
    Gaussian widths of the other coordinates of the frames ``x_next`` (``x_cond`` is ignored); the
    molecule is the one whose ``peptide-atom`` codes ``atom_types`` are.
    """

    def __init__(self, network: RotorNetwork, topologies: Sequence[app.Topology]) -> None:
        super().__init__()
        self.network = network
        self.molecules: dict[tuple[int, ...], tuple[MoleculeFeatures, nn.Module]] = {}
        self.transforms = nn.ModuleList()
        vocabulary = _vocabulary()
        for topology in topologies:
            zmatrix = build_zmatrix(topology)
            features = molecule_features(topology, zmatrix, vocabulary)
            network.known_names[features.names] = True
            transform = InternalCoordinateTransform(zmatrix)
            self.transforms.append(transform)
            self.molecules[tuple(features.names.tolist())] = (features, transform)

    def training_nll(
        self, x_cond: torch.Tensor, x_next: torch.Tensor, atom_types: torch.Tensor
    ) -> torch.Tensor:
        key = tuple(atom_types.tolist())
        if key not in self.molecules:
            raise ValueError("atom_types are those of no molecule this model was built with")
        features, transform = self.molecules[key]
        q, _, _ = transform.to_internal(x_next.double())
        q = q.float()
        parameters = molecule_parameters(self.network, features)
        rotor = features.coordinate_kinds == ROTOR
        spline = parameters[rotor, :-2]
        log_q = rotor_log_density(q[:, rotor], spline).sum(-1)
        log_q = log_q + non_rotor_log_density(
            q[:, ~rotor], features.coordinate_kinds[~rotor], parameters[~rotor]
        ).sum(-1)
        return -log_q


class ICRotorProposal(ZMatrixProposal):
    """The rotor proposal of one molecule (module docstring), its parameters fixed.

    ``raw [R, 3K + 1]`` are the rotors' spline parameters, ``steps [M - R]`` the walk's step of
    every other coordinate, ``rotor_weight`` the probability of a rotor move, ``rotor_fraction``
    the probability that a rotor move redraws a given rotor (``backbone_fraction`` for those that
    ``backbone`` ``[R]`` marks), ``uniform_weight`` the weight of the
    uniform density in each rotor's ``q_k`` (a floor that keeps every rotor state proposed, also
    where the learned density has little mass, as on molecules unlike the training set).
    """

    num_bonds: int
    num_angles: int
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
        self.num_bonds = zmatrix.num_atoms - 1
        self.num_angles = zmatrix.num_atoms - 2
        self.rotor_weight = float(rotor_weight)
        if backbone is None:
            backbone = torch.zeros(raw.shape[0], dtype=torch.bool)
        if backbone.shape != (raw.shape[0],):
            raise ValueError("backbone must mark each rotor (bool)")
        fractions = torch.where(backbone, backbone_fraction, rotor_fraction).double()
        self.register_buffer("fractions", fractions)
        self.uniform_weight = float(uniform_weight)
        self.register_buffer("rotor_index", torch.nonzero(rotor).flatten())
        self.register_buffer("walk_index", torch.nonzero(~rotor).flatten())
        walk_is_torsion = self.walk_index >= self.num_bonds + self.num_angles
        self.register_buffer("walk_is_torsion", walk_is_torsion)
        self.register_buffer("raw", raw.double().clone())
        self.register_buffer("steps", steps.double().clone())

    def rotor_log_density(self, q: torch.Tensor) -> torch.Tensor:
        """``sum_k log q_k`` of the rotors of internal coordinates ``q [B, M]``."""
        return rotor_log_density(q[:, self.rotor_index], self.raw, self.uniform_weight).sum(-1)

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals ``[C, B, N, 3]`` and logQRatio ``[C, B]`` for chains ``[C, N, 3]``."""
        num_proposals = noise.shape[1]
        q_chains, origin, rotation, labelling = self.labelled_internal(positions, atom_types)
        log_q_chains = self.rotor_log_density(q_chains)
        q = q_chains.repeat_interleave(num_proposals, dim=0)
        normal = noise.reshape(noise.shape[0] * num_proposals, -1).to(q.dtype)
        uniform = 0.5 * (1.0 + torch.erf(normal / math.sqrt(2.0)))
        rotor_move = uniform[:, self.num_internal] < self.rotor_weight

        # Rotor move: the selected rotors drawn from q_k. The rotor's noise number, uniform
        # given the selection, also picks the component (uniform density or spline) and the value
        # within it: the spline's by the inverse of its CDF.
        rotor_uniform = uniform[:, self.rotor_index]
        selected = rotor_uniform < self.fractions
        within = (rotor_uniform / self.fractions).clamp_max(1.0)
        flat = within < self.uniform_weight
        spline_uniform = (within - self.uniform_weight) / (1.0 - self.uniform_weight)
        circular = torch.ones_like(rotor_uniform, dtype=torch.bool)
        unit, _ = rational_quadratic(
            spline_uniform.clamp(0.0, 1.0), self.raw.expand(q.shape[0], -1, -1), circular, False
        )
        unit = torch.where(flat, within / max(self.uniform_weight, 1e-12), unit)
        redrawn = torch.where(selected, 2.0 * math.pi * unit - math.pi, q[:, self.rotor_index])
        q_rotor = q.index_copy(1, self.rotor_index, redrawn)

        # Local move: a Gaussian step on every other coordinate, torsions wrapped to the circle.
        walked = q[:, self.walk_index] + self.steps * normal[:, self.walk_index]
        wrapped = torch.remainder(walked + math.pi, 2.0 * math.pi) - math.pi
        walked = torch.where(self.walk_is_torsion, wrapped, walked)
        q_walk = q.index_copy(1, self.walk_index, walked)

        q_new = torch.where(rotor_move.unsqueeze(-1), q_rotor, q_walk)
        # A local move leaves the rotors, so their densities cancel; computing the new density
        # for every proposal keeps one formula for both moves.
        log_ratio = (
            log_q_chains.repeat_interleave(num_proposals)
            - self.rotor_log_density(q_new)
            + self.transform.log_det_jacobian(q_new)
            - self.transform.log_det_jacobian(q)
        )
        bonds, angles, _ = self.transform.split(q_new)
        valid = (bonds > 0.0).all(-1) & (angles > 0.0).all(-1) & (angles < math.pi).all(-1)
        log_ratio = torch.where(valid, log_ratio, torch.full_like(log_ratio, -math.inf))
        return self.chain_outputs(
            q_new, log_ratio, origin, rotation, labelling, atom_types, noise.shape, positions.dtype
        )


def _vocabulary() -> tuple[str, ...]:
    from openmm_timewarp.data.dipeptides import peptide_atom_vocabulary

    return peptide_atom_vocabulary()


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
    if not walk_scale > 0:
        raise ValueError(f"walk_scale must be positive, got {walk_scale}")
    if not any(True for _ in topology.bonds()):
        raise ValueError("the Topology has no bonds: build it with its residue templates")
    peptide_atom_codes(topology, _vocabulary())  # a clear error for non-peptides comes first
    zmatrix = build_zmatrix(topology)
    features = molecule_features(topology, zmatrix, _vocabulary())
    with torch.no_grad():
        parameters = molecule_parameters(network, features).double()
    rotor = features.coordinate_kinds == ROTOR
    steps = walk_scale * log_widths(features.coordinate_kinds[~rotor], parameters[~rotor]).exp()
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


def backbone_rotors(topology: app.Topology, features: MoleculeFeatures) -> torch.Tensor:
    """For each rotor (in coordinate order), whether its bond is a backbone N-CA, CA-C or C-N."""
    names = [atom.name for atom in topology.atoms()]
    rotors = features.coordinate_atoms[features.coordinate_kinds == ROTOR]
    return torch.tensor(
        [frozenset((names[j], names[k])) in BACKBONE_BONDS for _, j, k, _ in rotors.tolist()],
        dtype=torch.bool,
    )


def is_transferable(metadata: ModelMetadata) -> bool:
    """Whether a model file holds a transferable network rather than a proposal."""
    return metadata.family == FAMILY and metadata.num_atoms is None


def _cache_dir() -> Path:
    """The cache folder, created private to the user; refused if others could plant files."""
    root = os.environ.get("OPENMM_TIMEWARP_CACHE")
    if root:
        folder = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        folder = base / "openmm-timewarp"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.stat()
    if hasattr(os, "getuid") and (
        status.st_uid != os.getuid() or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise ValueError(
            f"the model cache {folder} is not private to you (another owner, or writable by "
            "others), so files there cannot be trusted; point OPENMM_TIMEWARP_CACHE to a folder "
            "of your own"
        )
    return folder


def _valid_cache_entry(cached: Path, record: Path) -> bool:
    """Whether ``cached`` is the file built here: its SHA-256 is the one recorded at build time."""
    if not (cached.is_file() and record.is_file()):
        return False
    return record.read_text().strip() == file_sha256(cached)


def model_file_for_topology(model: str | os.PathLike, topology: app.Topology | None) -> Path:
    """The file to load for ``model`` on ``topology``: the model's own file, or for a
    transferable ``ic-rotor`` network its proposal for this molecule.

    That proposal is built on first use and cached (``$OPENMM_TIMEWARP_CACHE``, else
    ``~/.cache/openmm-timewarp``) under a hash of the model file, the molecule and the code that
    builds proposals, so later loads and checkpoints find it.
    """
    path = resolve_model_path(model).resolve()
    metadata = load_metadata(path)
    if not is_transferable(metadata):
        return path
    if topology is None:
        raise ValueError(
            f"the model {metadata.name!r} is transferable: it is built for each molecule from its "
            "Topology; give the topology"
        )
    atoms = list(topology.atoms())
    digest = hashlib.sha256(path.read_bytes())
    # The code that builds the proposal is part of the key, so a new version rebuilds it.
    for module in (splines, zmatrix_module, proposals_module):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    for atom in atoms:
        digest.update(f"{atom.residue.index}:{atom.residue.name}:{atom.name};".encode())
    for bond in topology.bonds():
        digest.update(f"{bond[0].index}-{bond[1].index};".encode())
    cached = _cache_dir() / f"{metadata.name}-{digest.hexdigest()[:20]}.pt"
    record = cached.with_name(f"{cached.name}.sha256")
    if _valid_cache_entry(cached, record):
        return cached
    network, _ = load_model(path)
    proposal = rotor_proposal(network, topology)
    molecule = ModelMetadata(
        name=f"{metadata.name} for {_sequence(topology)}",
        family=FAMILY,
        tau_ps=metadata.tau_ps,
        temperature_K=metadata.temperature_K,
        forcefield=metadata.forcefield,
        atom_type_scheme="residue-atom",
        atom_types=list(proposal.labels),
        num_atoms=len(atoms),
        training={"transferable_model": metadata.name, **metadata.training},
    )
    temporary = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp")
    export(proposal, temporary, molecule)
    # The record first: a file without a matching record is rebuilt, never trusted.
    temporary_record = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    temporary_record.write_text(file_sha256(temporary))
    temporary_record.replace(record)
    temporary.replace(cached)
    return cached


def _sequence(topology: app.Topology) -> str:
    return "-".join(residue.name for residue in topology.residues())


def save_network(network: RotorNetwork, path: str | os.PathLike, metadata: ModelMetadata) -> Path:
    """Write a transferable model file: the scripted network with its metadata."""
    if not is_transferable(metadata):
        raise ValueError(f"a transferable model's metadata need family {FAMILY} and num_atoms None")
    return save_module(network.eval(), path, metadata)
