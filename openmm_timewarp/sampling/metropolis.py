"""The Metropolis-Hastings rules of the Python samplers: the one place that accepts or rejects.

Proposal models only propose (docs/contract.md), as moves do in openmmtools' MCMC; the rules that
keep the chain exact live here and nowhere else in Python:

- :func:`check_system`: what Metropolis-Hastings in Cartesian space cannot sample exactly
  (constraints, virtual sites, periodic boundaries) is refused;
- :func:`walk`: a proposal that is not finite (positions, logQRatio or energy), or that inverts a
  chiral centre (:func:`inverted_chirality`), is rejected; otherwise it is accepted with
  probability ``min(1, exp(-(U(x') - U(x)) / kT + logQRatio))``. A batch of proposals drawn from
  one state is walked in order up to the first acceptance (while proposals are rejected the state
  does not change, so this is sequential Metropolis-Hastings); for an independence proposal the
  walk goes on through the whole batch, each ratio rebased on the proposal last accepted
  (``logQRatio[j] - logQRatio[k]``);
- :func:`batch_size`: the adaptive batch ``K = ceil(log 0.1 / log(1 - a))`` for the running
  acceptance rate ``a``, the maximum before the first acceptance and always for an independence
  proposal (whose batches survive acceptances).

The C++ kernel of the plugin implements the same rules for ``TimewarpIntegrator``
(``plugin/kernels/src/TorchTimewarpKernels.cpp`` for the walk,
``plugin/openmmapi/src/TimewarpChainState.cpp`` for the batch size,
``plugin/openmmapi/src/TimewarpIntegrator.cpp`` for the System checks), plus the integrator's
exploration mode, which is not exact and has no Python counterpart. The statistical tests in
``tests/`` hold both to the same analytic expectations (tests/test_integrator_sampling.py for the
integrator, tests/test_chains.py for the many-chain sampler), with deliberately wrong proposals
(``tests/helpers.py``) as controls that must fail; tests/test_metropolis.py checks these rules
step by step.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import openmm
from openmm import app

__all__ = [
    "Outcome",
    "Step",
    "batch_size",
    "check_system",
    "inverted_chirality",
    "signed_volumes",
    "walk",
]


class Outcome(enum.Enum):
    """What became of one proposal."""

    ACCEPTED = enum.auto()
    REJECTED = enum.auto()  # by the acceptance test
    NON_FINITE = enum.auto()  # positions, logQRatio or energy not finite
    CHIRALITY = enum.auto()  # a chiral centre inverted


@dataclass(frozen=True)
class Step:
    """One Metropolis-Hastings step: the proposal's outcome and the chain's state after it."""

    outcome: Outcome
    positions: np.ndarray
    energy: float


def check_system(
    system: openmm.System,
    positions: np.ndarray,
    topology: app.Topology | None = None,
    name: str = "the chain",
) -> None:
    """Refuse what Metropolis-Hastings in Cartesian space cannot sample exactly (as the
    integrator does), and positions or a Topology that do not fit the System; ``name`` begins
    each message."""
    num_particles = system.getNumParticles()
    if np.shape(positions) != (num_particles, 3):
        raise ValueError(f"{name}: positions must have shape ({num_particles}, 3) (nm)")
    if system.getNumConstraints():
        raise ValueError(f"{name}: the System has constraints; build it without")
    if any(system.isVirtualSite(i) for i in range(num_particles)):
        raise ValueError(f"{name}: the System has virtual sites")
    if system.usesPeriodicBoundaryConditions():
        raise ValueError(f"{name}: periodic Systems are not supported")
    if topology is not None and topology.getNumAtoms() != num_particles:
        raise ValueError(f"{name}: the Topology and the System differ in atom count")


def batch_size(
    accepted: int, proposals: int, max_proposals: int, independent: bool, steps_left: int
) -> int:
    """The integrator's K after ``accepted`` of ``proposals``, capped by ``steps_left``:
    adaptive, or the maximum for an independence proposal."""
    rate = accepted / (proposals + 1)
    size = max_proposals
    if not independent and rate > 0.0:
        size = math.ceil(math.log(0.1) / math.log1p(-rate))
    return max(1, min(size, max_proposals, steps_left))


def signed_volumes(positions: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``dot(b - a, cross(c - a, d - a))`` of each quadruple ``(a, b, c, d)`` of ``centres [M, 4]``
    in configurations ``[..., N, 3]`` -> ``[..., M]``."""
    a, b, c, d = (positions[..., centres[:, k], :] for k in range(4))
    u, v, w = b - a, c - a, d - a
    # The triple product written out: numpy's cross has a large overhead on small arrays.
    return (
        u[..., 0] * (v[..., 1] * w[..., 2] - v[..., 2] * w[..., 1])
        + u[..., 1] * (v[..., 2] * w[..., 0] - v[..., 0] * w[..., 2])
        + u[..., 2] * (v[..., 0] * w[..., 1] - v[..., 1] * w[..., 0])
    )


def inverted_chirality(
    positions: np.ndarray, proposals: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Which of ``proposals [K, N, 3]`` invert a chiral centre of ``positions [N, 3]``: ``[K]``."""
    if not len(centres):
        return np.zeros(len(proposals), dtype=bool)
    before = signed_volumes(positions, centres)
    with np.errstate(invalid="ignore"):
        after = signed_volumes(proposals, centres)
    return (before * after < 0.0).any(axis=-1)


def walk(
    positions: np.ndarray,
    energy: float,
    proposals: np.ndarray,
    log_q_ratios: np.ndarray,
    *,
    kT: float,
    centres: np.ndarray,
    independent: bool,
    energy_of: Callable[[np.ndarray], float],
    uniform: Callable[[], float],
) -> Iterator[Step]:
    """Sequential Metropolis-Hastings from ``positions`` (energy ``energy``, kJ/mol) over
    ``proposals [K, N, 3]`` and their ``log_q_ratios [K]``, one :class:`Step` per proposal, up
    to the first acceptance; for an independence proposal over all of them.

    ``energy_of`` gives a configuration's potential energy (kJ/mol), ``uniform`` a uniform number
    in [0, 1); it is drawn only where the acceptance probability is below one.
    """
    finite = np.isfinite(log_q_ratios) & np.isfinite(proposals).all(axis=(1, 2))
    inverted = inverted_chirality(positions, proposals, centres)
    offset = 0.0  # logQRatio of the proposal the chain last moved to in this batch
    for proposal, log_q_ratio, is_finite, is_inverted in zip(
        proposals, log_q_ratios, finite, inverted, strict=True
    ):
        outcome = Outcome.REJECTED
        if not is_finite:
            outcome = Outcome.NON_FINITE
        elif is_inverted:
            outcome = Outcome.CHIRALITY
        else:
            proposal_energy = energy_of(proposal)
            if not math.isfinite(proposal_energy):
                outcome = Outcome.NON_FINITE
            else:
                log_acceptance = -(proposal_energy - energy) / kT + float(log_q_ratio) - offset
                if log_acceptance >= 0.0 or uniform() < math.exp(log_acceptance):
                    outcome = Outcome.ACCEPTED
                    positions, energy = proposal, proposal_energy
        yield Step(outcome, positions, energy)
        if outcome is Outcome.ACCEPTED:
            if not independent:
                return
            offset = float(log_q_ratio)
