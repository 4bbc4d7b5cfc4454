"""The densities of the rotor proposals: a circular spline per rotor (mixed with the uniform
density) and a Gaussian per other internal coordinate, parametrised by the rotor network's output
``[M, 3K + 3]`` (spline parameters, then the mean and the log width)."""

import math

import torch

from openmm_timewarp.proposals.ic.splines import rational_quadratic
from openmm_timewarp.proposals.rotors.features import FIXED_TORSION

#: Centre and scale of the network's mean output, and initial log width, per non-rotor kind.
MEAN_CENTRE = (0.12, 1.9, 0.0)
MEAN_SCALE = (0.03, 0.3, 2.0)
LOG_WIDTH_CENTRE = (math.log(0.005), math.log(0.08), math.log(0.15))


def log_widths(kinds: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
    """Log thermal width of each non-rotor coordinate (``kinds`` BOND, ANGLE, FIXED_TORSION)."""
    centre = torch.tensor(LOG_WIDTH_CENTRE, dtype=parameters.dtype, device=parameters.device)
    return centre[kinds] + parameters[:, -1]


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Angles (radians) wrapped to [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2.0 * math.pi) - math.pi


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


def redraw_rotors(
    torsions: torch.Tensor,
    uniform: torch.Tensor,
    fractions: torch.Tensor,
    raw: torch.Tensor,
    uniform_weight: float,
) -> torch.Tensor:
    """Rotor torsions ``[B, R]``, each redrawn from its ``q_k`` (the spline of ``raw [R, 3K + 1]``
    mixed with the uniform density by ``uniform_weight``) where its uniform number ``v [B, R]`` is
    below its ``fractions [R]``, kept otherwise. One number does both: ``v / f``, uniform given
    the selection, also picks the component and the value within it (the spline's by the inverse
    of its CDF)."""
    selected = uniform < fractions
    within = (uniform / fractions).clamp_max(1.0)
    flat = within < uniform_weight
    spline_uniform = (within - uniform_weight) / (1.0 - uniform_weight)
    circular = torch.ones_like(uniform, dtype=torch.bool)
    unit, _ = rational_quadratic(
        spline_uniform.clamp(0.0, 1.0), raw.expand(uniform.shape[0], -1, -1), circular, False
    )
    unit = torch.where(flat, within / max(uniform_weight, 1e-12), unit)
    return torch.where(selected, 2.0 * math.pi * unit - math.pi, torsions)


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
    difference = torch.where(torsion, wrap_angle(difference), difference)
    return -0.5 * (difference / log_width.exp()) ** 2 - log_width - 0.5 * math.log(2.0 * math.pi)
