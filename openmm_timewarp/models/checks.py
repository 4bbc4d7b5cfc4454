"""Checks that a proposal module meets the contract (docs/contract.md): shapes and dtypes,
``forward_chains`` against ``forward``, and a declared independence against the proposals."""

from __future__ import annotations

import torch


def check_contract(
    module: torch.nn.Module,
    positions: torch.Tensor,
    atom_types: torch.Tensor,
    batch_size: int = 3,
) -> None:
    """Raise ``ValueError`` naming what is wrong if ``module`` does not meet the contract."""
    for name, kind in (("noise_dim", int), ("tau", float), ("num_atoms", int)):
        if not isinstance(getattr(module, name, None), kind):
            raise ValueError(f"proposal model lacks the {kind.__name__} attribute `{name}`")
    num_atoms = positions.shape[0]
    noise = torch.randn(batch_size, num_atoms, module.noise_dim, generator=torch.Generator())
    with torch.no_grad():
        output = module(positions.float(), atom_types.long(), noise)
    if not (isinstance(output, tuple) and len(output) == 2):
        raise ValueError("forward must return a tuple (proposals, logQRatio)")
    proposals, log_q_ratio = output
    if proposals.shape != (batch_size, num_atoms, 3) or proposals.dtype != torch.float32:
        raise ValueError(
            f"proposals must be float32 of shape {(batch_size, num_atoms, 3)}, "
            f"got {proposals.dtype} {tuple(proposals.shape)}"
        )
    if log_q_ratio.shape != (batch_size,) or log_q_ratio.dtype != torch.float32:
        raise ValueError(
            f"logQRatio must be float32 of shape {(batch_size,)}, "
            f"got {log_q_ratio.dtype} {tuple(log_q_ratio.shape)}"
        )
    if has_forward_chains(module):
        check_forward_chains(module, positions, atom_types, batch_size)
    if bool(getattr(module, "independent", False)):
        check_independence(module, positions, atom_types, batch_size)


def check_independence(
    module: torch.nn.Module,
    positions: torch.Tensor,
    atom_types: torch.Tensor,
    batch_size: int = 3,
    position_tolerance_nm: float = 1e-3,
    ratio_tolerance: float = 1e-2,
) -> None:
    """Raise ``ValueError`` unless ``module`` proposes as an independence proposal
    (docs/contract.md): with the same noise, a state of other geometry gets the same proposals up
    to a rigid motion (the external frame each proposal keeps), and logQRatios that differ by one
    constant (``log q(x1) - log q(x2)``), the same proposals refused (ratio ``-inf``) at both.
    The two states are a proposal of the model from ``positions`` and the first proposal from
    that one with a finite ratio: both inside its support, and labelled alike where the model
    relabels equivalent atoms. A model with no finite ratio among 16 proposals cannot move a
    chain, and is not checked further."""
    generator = torch.Generator().manual_seed(2)
    num_atoms = positions.shape[0]
    noise = torch.randn(batch_size, num_atoms, module.noise_dim, generator=generator)
    state_noise = torch.randn(16, num_atoms, module.noise_dim, generator=generator)
    with torch.no_grad():
        first = module(positions.float(), atom_types.long(), state_noise)[0][0]
        candidates, candidate_ratios = module(first, atom_types.long(), state_noise)
        usable = torch.isfinite(candidate_ratios).nonzero().flatten()
        if len(usable) == 0:
            return
        second = candidates[int(usable[0])]
        proposals_first, ratios_first = module(first, atom_types.long(), noise)
        proposals_second, ratios_second = module(second, atom_types.long(), noise)
    deviation = _superposed_rmsd(proposals_first.double(), proposals_second.double()).max()
    finite = torch.isfinite(ratios_first) & torch.isfinite(ratios_second)
    same_refusals = bool((torch.isfinite(ratios_first) == torch.isfinite(ratios_second)).all())
    shifts = (ratios_first - ratios_second).double()[finite]
    spread = shifts.max() - shifts.min() if len(shifts) else torch.tensor(0.0)
    if not (same_refusals and deviation <= position_tolerance_nm and spread <= ratio_tolerance):
        raise ValueError(
            "the model declares itself independent, but its proposals depend on the current "
            f"state (same noise, two states: proposals differ by {float(deviation):.3g} nm after "
            f"superposition, logQRatio shifts spread over {float(spread):.3g}"
            f"{'' if same_refusals else ', different proposals refused'}); an independence "
            "declaration that is wrong samples the wrong distribution"
        )


def _superposed_rmsd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMSD of each configuration pair ``a[k]``, ``b[k]`` ([B, N, 3]) after the rotation and
    translation that superpose them best (Kabsch)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    u, _, vh = torch.linalg.svd(a.transpose(1, 2) @ b)
    sign = torch.sign(torch.linalg.det(u @ vh))
    u = torch.cat([u[..., :2], u[..., 2:] * sign[:, None, None]], dim=-1)
    rotated = a @ (u @ vh)
    return ((rotated - b) ** 2).sum(dim=-1).mean(dim=-1).sqrt()


def has_forward_chains(module: torch.nn.Module) -> bool:
    """Whether a proposal model has the many-chain method (files exported before it lack it)."""
    return callable(getattr(module, "forward_chains", None))


def check_forward_chains(
    module: torch.nn.Module,
    positions: torch.Tensor,
    atom_types: torch.Tensor,
    batch_size: int = 3,
    num_chains: int = 2,
) -> None:
    """Raise ``ValueError`` unless ``forward_chains`` on ``num_chains`` states near ``positions``
    gives, chain by chain, what ``forward`` gives (shapes, dtypes, and values to float32
    rounding)."""
    generator = torch.Generator().manual_seed(1)
    num_atoms = positions.shape[0]
    chains = positions.float() + 0.01 * torch.randn(num_chains, num_atoms, 3, generator=generator)
    noise = torch.randn(num_chains, batch_size, num_atoms, module.noise_dim, generator=generator)
    with torch.no_grad():
        proposals, log_q_ratio = module.forward_chains(chains, atom_types.long(), noise)
        expected = [module(chains[c], atom_types.long(), noise[c]) for c in range(num_chains)]
    if proposals.shape != (num_chains, batch_size, num_atoms, 3) or log_q_ratio.shape != (
        num_chains,
        batch_size,
    ):
        raise ValueError(
            f"forward_chains must return shapes {(num_chains, batch_size, num_atoms, 3)} and "
            f"{(num_chains, batch_size)}, got {tuple(proposals.shape)} and "
            f"{tuple(log_q_ratio.shape)}"
        )
    if proposals.dtype != torch.float32 or log_q_ratio.dtype != torch.float32:
        raise ValueError("forward_chains must return float32 proposals and logQRatio")
    same_proposals = torch.allclose(
        proposals, torch.stack([p for p, _ in expected]), rtol=1e-4, atol=1e-5, equal_nan=True
    )
    same_ratios = torch.allclose(
        log_q_ratio, torch.stack([r for _, r in expected]), rtol=1e-4, atol=1e-3, equal_nan=True
    )
    if not (same_proposals and same_ratios):
        raise ValueError(
            "forward_chains disagrees with forward called once per chain: it must give the same "
            "proposals and logQRatio"
        )
