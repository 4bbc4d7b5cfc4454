"""What the rotor proposal (``ic-rotor``) and the joint-backbone proposal (``ic-backbone``) share:
the checks and vocabulary of a peptide, the noise numbers that drive a move, and the local move (a
Gaussian walk on the non-rotor internal coordinates, torsions on the circle)."""

import math

import torch
from openmm import app

from openmm_timewarp.data.peptides import peptide_atom_vocabulary
from openmm_timewarp.proposals.ic.base import ZMatrixProposal
from openmm_timewarp.proposals.rotors.densities import log_widths, wrap_angle
from openmm_timewarp.proposals.rotors.features import peptide_atom_codes


def peptide_vocabulary(topology: app.Topology, walk_scale: float) -> tuple[str, ...]:
    """The ``peptide-atom`` vocabulary, after the checks that come first: a positive
    ``walk_scale``, a Topology with bonds, and the atoms of a peptide (a clear error otherwise)."""
    if not walk_scale > 0:
        raise ValueError(f"walk_scale must be positive, got {walk_scale}")
    if not any(True for _ in topology.bonds()):
        raise ValueError("the Topology has no bonds: build it with its residue templates")
    vocabulary = peptide_atom_vocabulary()
    peptide_atom_codes(topology, vocabulary)
    return vocabulary


def walk_steps(
    kinds: torch.Tensor, parameters: torch.Tensor, walk: torch.Tensor, walk_scale: float
) -> torch.Tensor:
    """The local move's step of each walked coordinate (``walk [M]``): ``walk_scale`` times its
    learned width."""
    return walk_scale * log_widths(kinds[walk], parameters[walk]).exp()


def register_walk(proposal: ZMatrixProposal, walk: torch.Tensor) -> None:
    """Buffers ``walk_index`` (the walked coordinates, ``walk [M]``) and ``walk_is_torsion``."""
    proposal.register_buffer("walk_index", torch.nonzero(walk).flatten())
    first_torsion = proposal.transform.num_bonds + proposal.transform.num_angles
    proposal.register_buffer("walk_is_torsion", proposal.walk_index >= first_torsion)


def noise_numbers(
    noise: torch.Tensor, num_rows: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``noise`` as ``num_rows`` rows of standard normal numbers in ``dtype``, and the same as
    uniform numbers in (0, 1) (the normal CDF of each)."""
    normal = noise.reshape(num_rows, -1).to(dtype)
    return normal, 0.5 * (1.0 + torch.erf(normal / math.sqrt(2.0)))


def local_walk(
    q: torch.Tensor,
    normal: torch.Tensor,
    walk_index: torch.Tensor,
    walk_is_torsion: torch.Tensor,
    steps: torch.Tensor,
) -> torch.Tensor:
    """The local move of ``q [B, M]``: a Gaussian step (``steps`` times ``normal``'s numbers of
    the walked coordinates) on every walked coordinate, torsions wrapped to the circle."""
    walked = q[:, walk_index] + steps * normal[:, walk_index]
    walked = torch.where(walk_is_torsion, wrap_angle(walked), walked)
    return q.index_copy(1, walk_index, walked)
