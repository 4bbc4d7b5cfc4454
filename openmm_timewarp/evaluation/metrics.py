"""Sampling-quality metrics: autocorrelation and effective sample size, dihedrals, TICA, metastable
states and their discovery, and free-energy agreement.

Conventions:

- Integrated autocorrelation time ``tau_int = 1 + 2 sum_k rho(k)`` in frames, so that the effective
  sample size is ``ESS = N / tau_int`` (an AR(1) series with coefficient ``rho`` has
  ``tau_int = (1 + rho) / (1 - rho)``). The sum is cut with Sokal's automatic window (the smallest
  ``M`` with ``M >= c tau_int(M)``) and its error is Sokal's ``tau_int sqrt(2 (2M + 1) / N)``.
  Several chains are pooled into one autocovariance around their common mean, so chains stuck in
  different states count as correlated, as they should. (deeptime's ``statistical_inefficiency``
  cuts the sum at the first zero of the autocorrelation and gives no error; the tests check that
  both agree.)
- Dihedrals are circular: the ESS of an angle is the smaller ESS of its sine and cosine, which
  catches a slow transition whichever of the two resolves it.
- The slow coordinate of a general peptide is TIC0 of a TICA (deeptime) fitted on the sine and
  cosine of the backbone dihedrals of a reference trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from openmm_timewarp.optional import require

if TYPE_CHECKING:  # deeptime is imported where it is used: it takes seconds to import
    from deeptime.decomposition import TICA

mdtraj = require("mdtraj")

#: Ramachandran basins of a dipeptide, in the order of their state labels.
RAMACHANDRAN_STATES = ("beta", "alphaR", "alphaL", "C7ax")

#: A run covers a coordinate when the bins it never visits (12 on the coordinate's range: 30
#: degrees of a dihedral, the references' range of TIC0) hold less than this share of the
#: reference runs' frames. 1% of 2 x 2 ns is 40 ps: a populated region, not a start's transient.
#: A run that stayed out of such a region measured its rate within part of the coordinate's range
#: (its autocorrelation window closes on the fast motion there), so its rate says nothing about
#: the slow process between the parts.
COVERAGE_BINS = 12
MAX_MISSED_MASS = 0.01


@dataclass(frozen=True)
class AutocorrelationEstimate:
    """Integrated autocorrelation time (in frames) and effective sample size of a series."""

    tau_int: float
    tau_int_error: float
    ess: float
    ess_error: float
    num_samples: int
    window: int
    #: Whether Sokal's window closed within the series; when it did not, tau_int is a lower bound
    #: and ESS an upper bound.
    window_closed: bool
    #: False when the window could not be closed or the series is shorter than 50 tau_int:
    #: then tau_int is a lower bound and ESS an upper bound.
    reliable: bool

    def as_dict(self) -> dict:
        return {
            "tau_int": self.tau_int,
            "tau_int_error": self.tau_int_error,
            "ess": self.ess,
            "ess_error": self.ess_error,
            "num_samples": self.num_samples,
            "window": self.window,
            "window_closed": self.window_closed,
            "reliable": self.reliable,
        }


def _as_chains(series: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One series (a 1-D array) or several chains (a list of 1-D arrays) as a list of chains."""
    if isinstance(series, np.ndarray):
        if series.ndim != 1:
            raise ValueError(
                f"a series must be a 1-D array (got shape {series.shape}); pass chains as a list"
            )
        series = [series]
    chains = [np.asarray(chain, dtype=float) for chain in series]
    if not chains or any(chain.ndim != 1 for chain in chains):
        raise ValueError("each chain must be a 1-D series")
    if any(len(chain) < 2 for chain in chains):
        raise ValueError("each chain needs at least 2 samples")
    if not all(np.isfinite(chain).all() for chain in chains):
        raise ValueError("the series contains NaN or infinite values")
    return chains


def autocorrelation_function(
    series: np.ndarray | Sequence[np.ndarray], max_lag: int | None = None
) -> np.ndarray:
    """Normalised autocorrelation rho(0..max_lag) of one series or pooled over several chains.

    Each chain's lagged products are taken around the common mean (FFT, zero-padded) and summed
    over chains, then divided by the number of pairs at that lag. A series without variance has
    rho = 1 at every lag (it never decorrelates).
    """
    chains = _as_chains(series)
    longest = max(len(chain) for chain in chains)
    max_lag = longest - 1 if max_lag is None else min(max_lag, longest - 1)
    mean = np.concatenate(chains).mean()
    products = np.zeros(max_lag + 1)
    pairs = np.zeros(max_lag + 1)
    for chain in chains:
        n = len(chain)
        size = 1 << (2 * n - 1).bit_length()
        spectrum = np.fft.rfft(chain - mean, size)
        lagged = np.fft.irfft(spectrum * np.conj(spectrum), size)[: min(n, max_lag + 1)]
        products[: len(lagged)] += lagged
        pairs[: len(lagged)] += n - np.arange(len(lagged))
    covariance = products / np.maximum(pairs, 1)
    if covariance[0] <= 1e-300:
        return np.ones(max_lag + 1)
    return covariance / covariance[0]


def integrated_autocorrelation_time(
    series: np.ndarray | Sequence[np.ndarray], window_factor: float = 5.0
) -> AutocorrelationEstimate:
    """Integrated autocorrelation time and ESS with Sokal's automatic window and error.

    Args:
        series: one 1-D series, or a list of chains of the same observable.
        window_factor: Sokal's ``c``; 5 suits roughly exponential autocorrelations.
    """
    chains = _as_chains(series)
    total = sum(len(chain) for chain in chains)
    rho = autocorrelation_function(chains)
    tau_of_window = 2.0 * np.cumsum(rho) - 1.0  # tau_int(M) = 1 + 2 sum_{k=1..M} rho(k)
    closed = np.flatnonzero(np.arange(len(rho)) >= window_factor * tau_of_window)
    window = int(closed[0]) if len(closed) else len(rho) - 1
    tau = max(float(tau_of_window[window]), 1.0 / total)
    tau = min(tau, float(total))
    tau_error = tau * math.sqrt(2.0 * (2 * window + 1) / total)
    ess = total / tau
    return AutocorrelationEstimate(
        tau_int=tau,
        tau_int_error=tau_error,
        ess=ess,
        ess_error=ess * tau_error / tau,
        num_samples=total,
        window=window,
        window_closed=bool(len(closed)),
        reliable=bool(len(closed)) and total >= 50 * tau,
    )


def block_standard_error(values: np.ndarray, num_blocks: int) -> float:
    """Standard error of the mean from ``num_blocks`` contiguous block means (batch means)."""
    values = np.asarray(values, dtype=float)
    if num_blocks < 2 or len(values) < num_blocks:
        raise ValueError(f"need at least {num_blocks} >= 2 values, got {len(values)}")
    usable = len(values) // num_blocks * num_blocks
    means = values[:usable].reshape(num_blocks, -1).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(num_blocks))


def dihedral_autocorrelation(
    angles: np.ndarray | Sequence[np.ndarray], window_factor: float = 5.0
) -> AutocorrelationEstimate:
    """ESS of a dihedral (radians): the smaller of those of its sine and cosine."""
    chains = [np.asarray(chain, dtype=float) for chain in _as_chains(angles)]
    estimates = [
        integrated_autocorrelation_time([f(chain) for chain in chains], window_factor)
        for f in (np.sin, np.cos)
    ]
    return min(estimates, key=lambda estimate: estimate.ess)


def backbone_dihedrals(trajectory: mdtraj.Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """phi and psi (radians, [frames, residues with each defined]) via mdtraj."""
    _, phi = mdtraj.compute_phi(trajectory)
    _, psi = mdtraj.compute_psi(trajectory)
    if phi.shape[1] == 0 or psi.shape[1] == 0:
        raise ValueError("the topology has no backbone phi/psi (is it a peptide?)")
    return phi, psi


def dihedral_features(trajectory: mdtraj.Trajectory) -> np.ndarray:
    """sin and cos of every backbone phi and psi: the TICA input, [frames, 4 x residues]."""
    phi, psi = backbone_dihedrals(trajectory)
    angles = np.concatenate([phi, psi], axis=1)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def fit_tica(features: np.ndarray | Sequence[np.ndarray], lagtime: int, dim: int = 2) -> TICA:
    """TICA (deeptime, kinetic-map scaling) fitted on reference features; returns the estimator."""
    TICA = require("deeptime.decomposition").TICA

    chains = [features] if isinstance(features, np.ndarray) else list(features)
    shortest = min(len(chain) for chain in chains)
    if lagtime < 1 or lagtime >= shortest:
        raise ValueError(f"TICA lagtime must be in [1, {shortest - 1}] frames, got {lagtime}")
    tica = TICA(lagtime=lagtime, dim=dim)
    tica.fit(chains)
    return tica


def ramachandran_states(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Label each (phi, psi) (radians) of a dipeptide with its basin, as in RAMACHANDRAN_STATES.

    Left-handed region 0 < phi < 120 degrees: alphaL for -20 <= psi < 130, else C7ax. Elsewhere
    (which includes phi in (120, 180), the beta basin wrapped around +-180): alphaR for
    -120 <= psi < 50, else beta (beta, PII and C7eq).
    """
    phi_deg = np.degrees(np.asarray(phi, dtype=float))
    psi_deg = np.degrees(np.asarray(psi, dtype=float))
    left = (phi_deg > 0) & (phi_deg < 120)
    alpha_l = (psi_deg >= -20) & (psi_deg < 130)
    alpha_r = (psi_deg >= -120) & (psi_deg < 50)
    return np.where(left, np.where(alpha_l, 2, 3), np.where(alpha_r, 1, 0)).astype(np.int64)


@dataclass(frozen=True)
class KMeansStates:
    """Metastable-state proxy for peptides with more than one residue: k-means on TICs."""

    centers: np.ndarray

    def assign(self, tics: np.ndarray) -> np.ndarray:
        distances = np.linalg.norm(tics[:, None, :] - self.centers[None], axis=-1)
        return distances.argmin(axis=1).astype(np.int64)


def kmeans_states(reference_tics: np.ndarray, num_states: int, seed: int = 0) -> KMeansStates:
    """Cluster reference TIC coordinates into ``num_states`` states with deeptime's k-means."""
    KMeans = require("deeptime.clustering").KMeans

    if num_states < 2 or num_states > len(reference_tics):
        raise ValueError(f"num_states must be in [2, {len(reference_tics)}], got {num_states}")
    model = KMeans(num_states, fixed_seed=seed, init_strategy="kmeans++").fit(reference_tics)
    return KMeansStates(np.asarray(model.fetch_model().cluster_centers))


def discovery_times(
    labels: np.ndarray, times: np.ndarray, states: Sequence[int]
) -> dict[int, float | None]:
    """Time of the first frame in each of ``states`` (None when never visited)."""
    labels, times = np.asarray(labels), np.asarray(times, dtype=float)
    if labels.shape != times.shape:
        raise ValueError(f"labels {labels.shape} and times {times.shape} differ in shape")
    first = {}
    for state in states:
        visits = np.flatnonzero(labels == state)
        first[int(state)] = float(times[visits[0]]) if len(visits) else None
    return first


def time_to_discover_all(first_visits: dict[int, float | None]) -> float | None:
    """When the last of the states was first visited; None if any was never visited."""
    if any(t is None for t in first_visits.values()):
        return None
    return max(first_visits.values(), default=0.0)


def discovery_curve(first_visits: dict[int, float | None]) -> tuple[np.ndarray, np.ndarray]:
    """(times, number of states discovered by then), as steps for plotting."""
    times = np.sort([t for t in first_visits.values() if t is not None])
    return times, np.arange(1, len(times) + 1)


def histogram_2d(
    x: np.ndarray, y: np.ndarray, bins: int, value_range: Sequence[Sequence[float]]
) -> np.ndarray:
    """Normalised 2-D histogram (probabilities summing to 1 over the range; 0 if no samples)."""
    counts, _, _ = np.histogram2d(x, y, bins=bins, range=value_range)
    total = counts.sum()
    return counts / total if total else counts


def jensen_shannon_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """JSD in bits (0 identical, 1 disjoint) between two histograms of the same binning."""
    p = np.asarray(p, dtype=float).ravel()
    q = np.asarray(q, dtype=float).ravel()
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("need two non-empty histograms of the same binning")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def free_energy_profile(
    values: np.ndarray | Sequence[np.ndarray],
    edges: np.ndarray,
    num_blocks: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free energy (kT) along a coordinate, with a standard error from block histograms.

    The frames (chains concatenated) are split into ``num_blocks`` contiguous blocks; the profile is
    that of all frames, shifted so its minimum is 0, and its error the standard error of the
    blocks' profiles (NaN where a bin is empty in some block, inf F where empty overall).
    """
    chains = [values] if isinstance(values, np.ndarray) else list(values)
    data = np.concatenate([np.asarray(chain, dtype=float) for chain in chains])
    if len(data) < num_blocks:
        raise ValueError(f"need at least {num_blocks} frames, got {len(data)}")
    with np.errstate(divide="ignore"):
        counts, _ = np.histogram(data, bins=edges)
        free_energy = -np.log(counts / counts.sum())
        free_energy -= free_energy[np.isfinite(free_energy)].min(initial=0.0)
        blocks = []
        for block in np.array_split(data, num_blocks):
            block_counts, _ = np.histogram(block, bins=edges)
            blocks.append(-np.log(block_counts / max(block_counts.sum(), 1)))
    blocks = np.asarray(blocks)
    finite = np.isfinite(blocks).all(axis=0)
    error = np.full(len(counts), np.nan)
    error[finite] = blocks[:, finite].std(axis=0, ddof=1) / math.sqrt(num_blocks)
    centers = 0.5 * (edges[1:] + edges[:-1])
    return centers, free_energy, error


def missed_mass(values: np.ndarray, reference_values: np.ndarray, edges: np.ndarray) -> float:
    """Share of ``reference_values`` in the bins (``edges``) where ``values`` has no entry."""
    reference_counts = np.histogram(reference_values, edges)[0]
    visited = np.histogram(values, edges)[0] > 0
    return float(reference_counts[~visited].sum() / max(len(reference_values), 1))
