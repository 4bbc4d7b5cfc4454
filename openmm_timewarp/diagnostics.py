"""Warnings about chains that do not move.

A Metropolis-Hastings chain that accepts nothing still samples exactly, and is useless; nothing
else in its output shows it. The integrator's Python face and the many-chain sampler warn once
per chain (Python ``warnings``) when it has accepted none of its first
``STUCK_AFTER_PROPOSALS`` proposals, and ``timewarp sample`` / ``timewarp benchmark`` print it.
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
