"""Warnings about chains that do not move.

A Metropolis-Hastings chain that accepts nothing still samples exactly, and is useless; nothing
else in its output shows it. The integrator's Python face and the many-chain sampler warn once
per chain (Python ``warnings``) when it has accepted none of its first
``STUCK_AFTER_PROPOSALS`` proposals, and ``timewarp sample`` / ``timewarp benchmark`` print it.
Sooner, after ``NON_FINITE_WARNING_PROPOSALS``, they warn when every proposal so far was
non-finite: a broken model, not a poor one.
"""

import warnings

#: Proposals without a single acceptance after which a chain is reported as stuck.
STUCK_AFTER_PROPOSALS = 2000


class StuckChainWarning(RuntimeWarning):
    """A chain accepted none of its first proposals."""


def is_stuck(proposals: int, accepted: int) -> bool:
    """Whether a chain with these counters has accepted none of at least the first
    ``STUCK_AFTER_PROPOSALS`` proposals."""
    return accepted == 0 and proposals >= STUCK_AFTER_PROPOSALS


def stuck_message(chain: str, proposals: int, rejected_non_finite: int) -> str:
    """What to tell the user about a chain that accepted none of ``proposals`` proposals."""
    return (
        f"{chain} accepted none of its first {proposals} proposals "
        f"({rejected_non_finite} of them with non-finite positions, energy or ratio). The chain "
        "samples exactly but does not move. Likely causes: the model was trained for another "
        "molecule or force field (the test uses your System's energies; a different force field "
        "lowers acceptance), or the start is far from equilibrium (minimise it first)."
    )


def warn_stuck(chain: str, proposals: int, rejected_non_finite: int) -> None:
    warnings.warn(
        stuck_message(chain, proposals, rejected_non_finite), StuckChainWarning, stacklevel=3
    )


#: Proposals a chain must have drawn before "every one was non-finite" is worth a warning.
NON_FINITE_WARNING_PROPOSALS = 10


def warn_if_all_non_finite(chain: str, proposed: int, rejected_non_finite: int) -> bool:
    """Warn (``RuntimeWarning``) and return ``True`` if every proposal of ``chain`` so far was
    rejected as non-finite: the chain cannot move, and the model is most likely broken."""
    if proposed < NON_FINITE_WARNING_PROPOSALS or rejected_non_finite < proposed:
        return False
    warnings.warn(
        f"{chain}: all {proposed} proposals so far were non-finite (NaN or infinite positions, "
        "logQRatio or energy), so the chain has not moved; the proposal model is broken or "
        "does not fit this System",
        RuntimeWarning,
        stacklevel=3,
    )
    return True
