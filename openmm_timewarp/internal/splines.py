"""Rational-quadratic splines on the unit interval and the unit circle, in plain tensor ops.

A monotone rational-quadratic spline (Durkan et al., 2019) with ``K`` bins maps [0, 1] onto itself;
its bin widths, heights and knot derivatives come from ``3K + 1`` unconstrained numbers per
coordinate. For an interval coordinate those are ``K`` widths, ``K`` heights and ``K + 1``
derivatives. For a circular coordinate (a torsion scaled to [0, 1)) the end derivatives are tied, so
the map is smooth across 0 == 1, and the last number is a rotation: ``y = (s(x) + shift) mod 1``
(Rezende et al., 2020). Inputs of interval coordinates outside [0, 1] have zero density: their
log-derivative is ``-inf``. Everything here is TorchScript-able.
"""

import math

import torch
import torch.nn.functional as F


def num_spline_parameters(num_bins: int) -> int:
    return 3 * num_bins + 1


def _knots(raw: torch.Tensor, min_bin_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes and knot positions (0 ... 1) from unnormalised sizes ``[..., K]``."""
    num_bins = raw.shape[-1]
    sizes = min_bin_size + (1.0 - min_bin_size * num_bins) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    # Pin the last knot to 1 exactly so rounding never leaves a gap at the end of the interval.
    knots = torch.cat([knots[..., :-1], torch.ones_like(knots[..., -1:])], dim=-1)
    return knots[..., 1:] - knots[..., :-1], knots


def _select(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(values, -1, index.unsqueeze(-1)).squeeze(-1)


def rational_quadratic(
    x: torch.Tensor,
    raw: torch.Tensor,
    circular: torch.Tensor,
    inverse: bool,
    min_bin_size: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the spline (or its inverse) elementwise; returns ``(y, log |dy/dx|)``.

    ``x[...]`` in [0, 1]; ``raw[..., 3K + 1]`` unconstrained parameters; ``circular[...]`` (bool,
    broadcastable to ``x``) marks coordinates on the circle. Zero parameters give the identity.
    """
    num_bins = (raw.shape[-1] - 1) // 3
    widths, x_knots = _knots(raw[..., :num_bins], min_bin_size)
    heights, y_knots = _knots(raw[..., num_bins : 2 * num_bins], min_bin_size)
    # The offset makes zero raw parameters give derivative 1.
    identity_offset = math.log(math.expm1(1.0 - min_derivative))
    derivatives = min_derivative + F.softplus(raw[..., 2 * num_bins :] + identity_offset)
    circular = circular.expand_as(x)
    # Circular: the last derivative equals the first; the spare parameter is the rotation.
    last_derivative = torch.where(circular, derivatives[..., 0], derivatives[..., num_bins])
    derivatives = torch.cat([derivatives[..., :num_bins], last_derivative.unsqueeze(-1)], dim=-1)
    shift = torch.where(circular, raw[..., -1], torch.zeros_like(x))

    if inverse:
        x = torch.where(circular, torch.remainder(x - shift, 1.0), x)
    inside = (x >= 0.0) & (x <= 1.0)
    x = x.clamp(0.0, 1.0)
    knots = y_knots if inverse else x_knots
    index = (x.unsqueeze(-1) >= knots[..., 1:num_bins]).sum(-1)
    x_k = _select(x_knots, index)
    y_k = _select(y_knots, index)
    w_k = _select(widths, index)
    h_k = _select(heights, index)
    d_k = _select(derivatives, index)
    d_k1 = _select(derivatives, index + 1)
    slope = h_k / w_k
    curvature = d_k1 + d_k - 2.0 * slope

    if inverse:
        dy = x - y_k
        a = h_k * (slope - d_k) + dy * curvature
        b = h_k * d_k - dy * curvature
        c = -slope * dy
        discriminant = (b * b - 4.0 * a * c).clamp_min(0.0)
        xi = (2.0 * c) / (-b - torch.sqrt(discriminant))
        output = x_k + xi * w_k
    else:
        xi = (x - x_k) / w_k
        output = y_k + h_k * (slope * xi * xi + d_k * xi * (1.0 - xi)) / (
            slope + curvature * xi * (1.0 - xi)
        )
    one_minus = 1.0 - xi
    denominator = slope + curvature * xi * one_minus
    log_derivative = (
        2.0 * torch.log(slope)
        + torch.log(d_k1 * xi * xi + 2.0 * slope * xi * one_minus + d_k * one_minus * one_minus)
        - 2.0 * torch.log(denominator)
    )
    if inverse:
        log_derivative = -log_derivative
    else:
        output = torch.where(circular, torch.remainder(output + shift, 1.0), output)
    log_derivative = torch.where(inside, log_derivative, torch.full_like(x, -math.inf))
    return output, log_derivative
