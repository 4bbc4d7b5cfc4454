"""A residue's (phi, psi) density: a ``G x G`` histogram on the torus, uniform within a bin.

The network gives ``G * G`` logits per residue (phi bin major). Mixed with the uniform density by
``uniform_weight`` the mixture is again a histogram, so one table serves densities and draws.
What is drawn depends on which angles are free (``residues``):

- both free: the joint density (per rad^2);
- one free, the other defined but fixed (proline's phi): the free angle's conditional given the
  fixed angle's current bin, which a backbone move leaves, so the same both ways (per rad);
- one free, the other undefined (a zwitterionic terminus): the free angle's marginal (per rad),
  written as the conditional of a table whose undefined axis is uniform.

:func:`density_tables` gives, for each residue, the log density at every pair of bins and the
cumulative distribution over the ``G * G`` bins for each *key*: the fixed angle's bin where one
angle is free (every key gives the joint where both are).
"""

import math

import torch


def angle_bins(angles: torch.Tensor, grid: int) -> torch.Tensor:
    """The bin of each angle (radians, any range) on a grid of ``grid`` bins from -pi."""
    unit = torch.remainder(angles + math.pi, 2.0 * math.pi) / (2.0 * math.pi)
    return (unit * grid).floor().long().clamp(0, grid - 1)


def density_tables(
    logits: torch.Tensor,
    free_phi: torch.Tensor,
    free_psi: torch.Tensor,
    defined_phi: torch.Tensor,
    defined_psi: torch.Tensor,
    uniform_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_density [E, G, G], cdf [E, G, G * G])`` of residues with logits ``[E, G * G]``
    (flags ``[E]`` bool; every residue has a free angle). ``log_density[e, i, j]`` is the log
    density (per rad^number of free angles) of phi in bin i and psi in bin j; ``cdf[e, key]`` the
    cumulative distribution of the bin pair drawn given the key (module docstring)."""
    num_residues = logits.shape[0]
    grid = int(round(math.sqrt(logits.shape[1])))
    probabilities = (1.0 - uniform_weight) * torch.softmax(logits, dim=-1) + uniform_weight / (
        grid * grid
    )
    table = probabilities.reshape(num_residues, grid, grid)
    # An undefined angle's axis made uniform: its conditional is then the other's marginal.
    uniform_psi = table.sum(2, keepdim=True).expand(-1, -1, grid) / grid
    uniform_phi = table.sum(1, keepdim=True).expand(-1, grid, -1) / grid
    table = torch.where(defined_psi[:, None, None], table, uniform_psi)
    table = torch.where(defined_phi[:, None, None], table, uniform_phi)
    phi_given_psi = table / table.sum(1, keepdim=True)
    psi_given_phi = table / table.sum(2, keepdim=True)
    joint = (free_phi & free_psi)[:, None, None]
    only_phi = (free_phi & ~free_psi)[:, None, None]
    density = torch.where(joint, table, torch.where(only_phi, phi_given_psi, psi_given_phi))
    width = 2.0 * math.pi / grid
    free_angles = free_phi.to(logits.dtype) + free_psi.to(logits.dtype)
    log_density = density.log() - free_angles[:, None, None] * math.log(width)

    keys = torch.arange(grid, device=logits.device)
    bins = torch.arange(grid, device=logits.device)
    # masses[e, key, i, j]: probability of the bin pair (i, j) drawn given the key.
    phi_mask = (bins[None, None, :] == keys[:, None, None]).to(logits.dtype)  # psi bin j == key
    psi_mask = (bins[None, :, None] == keys[:, None, None]).to(logits.dtype)  # phi bin i == key
    masses = torch.where(
        joint[:, None],
        table[:, None],
        torch.where(
            only_phi[:, None],
            phi_given_psi[:, None] * phi_mask[None],
            psi_given_phi[:, None] * psi_mask[None],
        ),
    ).reshape(num_residues, grid, grid * grid)
    cdf = masses.cumsum(-1)
    return log_density, cdf / cdf[..., -1:]


def log_density_at(log_density: torch.Tensor, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """``[B, E]`` log densities of angles ``phi, psi [B, E]`` (values of undefined angles are
    ignored by the table) from ``log_density [E, G, G]``."""
    grid = log_density.shape[1]
    residue = torch.arange(log_density.shape[0], device=phi.device).expand_as(phi)
    return log_density[residue, angle_bins(phi, grid), angle_bins(psi, grid)]


def draw_angles(
    cdf: torch.Tensor,
    keys: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    free_phi: torch.Tensor,
    free_psi: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """New ``(phi, psi) [B, E]`` drawn from ``cdf [E, G, G * G]`` given ``keys [B, E]`` and two
    uniform numbers per residue ``first, second [B, E]``: ``first`` picks the bin pair by the
    inverse CDF and its residual within the bin's interval places the first free angle (phi if
    free, else psi) within its bin; ``second`` places psi where both are free. Angles that are
    not free come back as drawn bins' centres and must not be used."""
    grid = cdf.shape[1]
    residue = torch.arange(cdf.shape[0], device=cdf.device).expand_as(keys)
    rows = cdf[residue, keys]  # [B, E, G * G]
    flat = torch.searchsorted(rows, first.unsqueeze(-1), right=True).clamp_max(grid * grid - 1)
    upper = rows.gather(-1, flat).squeeze(-1)
    lower = torch.where(
        flat.squeeze(-1) > 0,
        rows.gather(-1, (flat - 1).clamp_min(0)).squeeze(-1),
        torch.zeros_like(upper),
    )
    residual = ((first - lower) / (upper - lower)).clamp(0.0, 1.0 - 1e-12)
    flat = flat.squeeze(-1)
    phi_bin = torch.div(flat, grid, rounding_mode="floor")
    psi_bin = flat - grid * phi_bin
    half = torch.full_like(first, 0.5)
    phi_offset = torch.where(free_phi, residual, half)
    psi_offset = torch.where(free_phi, torch.where(free_psi, second, half), residual)
    width = 2.0 * math.pi / grid
    phi = -math.pi + (phi_bin.to(first.dtype) + phi_offset) * width
    psi = -math.pi + (psi_bin.to(first.dtype) + psi_offset) * width
    return phi, psi
