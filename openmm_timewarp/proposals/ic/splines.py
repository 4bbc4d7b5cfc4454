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


def _interior_knots(raw: torch.Tensor, min_bin_size: float) -> torch.Tensor:
    """The ``K - 1`` inner knots from unnormalised bin sizes ``[..., K]``; the ends are 0 and 1."""
    num_bins = raw.shape[-1]
    sizes = min_bin_size + (1.0 - min_bin_size * num_bins) * torch.softmax(raw, dim=-1)
    return torch.cumsum(sizes[..., :-1], dim=-1)


def _select(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(values, -1, index.unsqueeze(-1)).squeeze(-1)


def _bin_edges(interior: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right knot of bin ``index``; the outer knots are exactly 0 and 1, so the bins
    tile [0, 1] without a rounding gap."""
    last = interior.shape[-1]
    left = _select(interior, (index - 1).clamp_min(0))
    right = _select(interior, index.clamp_max(last - 1))
    left = torch.where(index == 0, torch.zeros_like(left), left)
    right = torch.where(index == last, torch.ones_like(right), right)
    return left, right


def rational_quadratic(
    x: torch.Tensor,
    raw: torch.Tensor,
    circular: torch.Tensor,
    inverse: bool,
    min_bin_size: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the spline (or its inverse) elementwise; returns ``(y, log |dy/dx|)``.

    ``x[...]`` in [0, 1]; ``raw[..., 3K + 1]`` unconstrained parameters (``K >= 2``);
    ``circular[...]`` (bool, broadcastable to ``x``) marks coordinates on the circle. Zero
    parameters give the identity. Only the parameters of the bin each input falls in are
    transformed beyond the knot positions, which keeps the cost per coordinate low.
    """
    num_bins = (raw.shape[-1] - 1) // 3
    x_interior = _interior_knots(raw[..., :num_bins], min_bin_size)
    y_interior = _interior_knots(raw[..., num_bins : 2 * num_bins], min_bin_size)
    circular = circular.expand_as(x)
    # Circular: the spare parameter is the rotation.
    shift = torch.where(circular, raw[..., -1], torch.zeros_like(x))

    if inverse:
        x = torch.where(circular, torch.remainder(x - shift, 1.0), x)
    inside = (x >= 0.0) & (x <= 1.0)
    x = x.clamp(0.0, 1.0)
    index = (x.unsqueeze(-1) >= (y_interior if inverse else x_interior)).sum(-1)
    x_k, x_k1 = _bin_edges(x_interior, index)
    y_k, y_k1 = _bin_edges(y_interior, index)
    w_k = x_k1 - x_k
    h_k = y_k1 - y_k
    # Knot derivatives; on the circle the last knot is the first, so they share a derivative.
    raw_derivatives = raw[..., 2 * num_bins :]
    next_index = torch.where(circular & (index == num_bins - 1), torch.zeros_like(index), index + 1)
    # The offset makes zero raw parameters give derivative 1.
    identity_offset = math.log(math.expm1(1.0 - min_derivative))
    d_k = min_derivative + F.softplus(_select(raw_derivatives, index) + identity_offset)
    d_k1 = min_derivative + F.softplus(_select(raw_derivatives, next_index) + identity_offset)
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
