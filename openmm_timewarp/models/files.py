"""Proposal-model files: writing (:func:`export`, :func:`save_module`, :func:`resave`) and
reading (:func:`read_metadata`, :func:`read_model`), each file's content checksum verified.

This module is the one place that knows the file format: a TorchScript archive with the metadata
as the extra file ``timewarp.json`` and the SHA-256 of the rest as ``timewarp.sha256``
(docs/contract.md, docs/trust.md). Names of bundled models resolve to files in
``openmm_timewarp.models.resolve``.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from pathlib import Path

import torch

from openmm_timewarp.files import write_atomically
from openmm_timewarp.models.checks import check_contract
from openmm_timewarp.models.metadata import METADATA_FILE, ModelMetadata

#: SHA-256 of the rest of the file (docs/trust.md), an extra file beside the metadata.
CHECKSUM_FILE = "timewarp.sha256"
#: Records left out of the checksum: the checksum itself, and the archive's id that torch
#: derives from all records (so from the checksum too).
_UNHASHED_RECORDS = (f"extra/{CHECKSUM_FILE}", ".data/serialization_id")


class _ContractModule(torch.nn.Module):
    """Carries the contract attributes next to any proposal module, so the integrator reads them."""

    def __init__(self, proposal: torch.nn.Module, metadata: ModelMetadata) -> None:
        super().__init__()
        self.proposal = proposal
        self.noise_dim: int = int(proposal.noise_dim)
        self.tau: float = float(metadata.tau_ps)
        self.num_atoms: int = int(metadata.num_atoms or 0)
        self.num_atom_types: int = len(metadata.atom_types)
        declared = getattr(proposal, "independent", False)
        # Only a bool declares it (a mixture's `independent` is its component module).
        self.independent: bool = declared if isinstance(declared, bool) else False

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proposal(positions, atom_types, noise)

    @torch.jit.export
    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` for C chains: ``positions [C, N, 3]``, ``noise [C, B, N, noise_dim]`` ->
        proposals ``[C, B, N, 3]`` and logQRatio ``[C, B]``."""
        # Resolved when scripting: the proposal's own batched method, or one forward per chain.
        if hasattr(self.proposal, "forward_chains"):
            return self.proposal.forward_chains(positions, atom_types, noise)
        proposals: list[torch.Tensor] = []
        log_q_ratios: list[torch.Tensor] = []
        for chain in range(positions.shape[0]):
            chain_proposals, chain_log_q_ratio = self.proposal(
                positions[chain], atom_types, noise[chain]
            )
            proposals.append(chain_proposals)
            log_q_ratios.append(chain_log_q_ratio)
        return torch.stack(proposals), torch.stack(log_q_ratios)


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def example_inputs(
    metadata: ModelMetadata, positions: torch.Tensor | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (random, 0.3 nm spread, if not given) and atom-type codes that the contract
    check runs a model of ``metadata`` on: each atom its own label for the ``residue-atom``
    scheme, random codes of the vocabulary otherwise."""
    if positions is None:
        num_atoms = metadata.num_atoms or len(metadata.atom_types)
        positions = torch.randn(num_atoms, 3, generator=generator) * 0.3
    num_atoms = positions.shape[0]
    if metadata.atom_type_scheme == "residue-atom":
        atom_types = torch.arange(num_atoms, dtype=torch.int64)
    else:
        atom_types = torch.randint(len(metadata.atom_types), (num_atoms,), generator=generator)
    return positions, atom_types


def export(
    model: torch.nn.Module,
    path: str | os.PathLike,
    metadata: ModelMetadata,
    example_positions: torch.Tensor | None = None,
) -> Path:
    """Write ``model`` as a proposal-model file that :class:`TimewarpIntegrator` loads.

    ``model`` needs an integer attribute ``noise_dim`` and the contract's ``forward``, and
    should have its batched ``forward_chains`` (a model without one gets a loop of ``forward``
    calls, correct but not batched). It is scripted, wrapped with the contract attributes taken
    from ``metadata``, checked on ``example_positions`` (random coordinates if not given), and
    saved with the metadata. Returns the path written.
    """
    if not isinstance(getattr(model, "noise_dim", None), int) or model.noise_dim < 1:
        raise ValueError("a proposal model needs a positive integer attribute `noise_dim`")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    scripted = _script(_ContractModule(model.eval(), metadata))
    example_positions, atom_types = example_inputs(
        metadata, example_positions, torch.Generator().manual_seed(0)
    )
    check_contract(scripted, example_positions, atom_types)
    return save_module(scripted, path, metadata)


def save_module(module: torch.nn.Module, path: str | os.PathLike, metadata: ModelMetadata) -> Path:
    """Script ``module`` (unless it is) and save it with ``metadata`` as ``timewarp.json`` and
    the checksum of its content, which :func:`read_metadata` and :func:`read_model` verify; the
    file is replaced in one rename, so an interrupted save leaves the old one."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    scripted = module if isinstance(module, torch.jit.ScriptModule) else _script(module)
    tensors = dict(scripted.named_parameters()) | dict(scripted.named_buffers())
    broken = [name for name, value in tensors.items() if not bool(torch.isfinite(value).all())]
    if broken:
        raise ValueError(f"not saving {path}: non-finite values in {', '.join(broken[:5])}")
    extra_files = {METADATA_FILE: metadata.to_json()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        draft = io.BytesIO()
        torch.jit.save(scripted, draft, _extra_files=extra_files)
        with zipfile.ZipFile(draft) as archive:
            extra_files[CHECKSUM_FILE] = _content_checksum(archive)
        write_atomically(
            path, lambda handle: torch.jit.save(scripted, handle, _extra_files=extra_files)
        )
    verify_checksum(path)
    return path


def save_transferable_network(
    network: torch.nn.Module, path: str | os.PathLike, metadata: ModelMetadata, family: str
) -> Path:
    """Write a transferable model file of ``family`` (a network built into a proposal for each
    molecule): the scripted network with its metadata, which must name ``family`` and no size."""
    if metadata.family != family or metadata.num_atoms is not None:
        raise ValueError(f"a transferable model's metadata need family {family} and num_atoms None")
    return save_module(network.eval(), path, metadata)


def _content_checksum(archive: zipfile.ZipFile) -> str:
    """SHA-256 over the archive's records (names without the top folder, which torch names
    after the file), the checksum record and the archive id left out."""
    digest = hashlib.sha256()
    for name in sorted(archive.namelist(), key=lambda n: n.partition("/")[2]):
        record = name.partition("/")[2]
        if record in _UNHASHED_RECORDS:
            continue
        data = archive.read(name)
        digest.update(f"{record}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless ``path`` is a model file whose checksum matches its content.

    The checksum finds corruption and truncation; it is no signature (docs/trust.md).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{CHECKSUM_FILE}")]
            recorded = archive.read(names[0]).decode(errors="replace").strip() if names else None
            actual = _content_checksum(archive)
    except Exception as error:  # zipfile raises many kinds on damaged archives
        raise ValueError(
            f"{path} is not a TorchScript proposal-model file (or is truncated or corrupt): "
            f"{error!r}"
        ) from error
    if recorded is None:
        raise ValueError(
            f"{path} has no checksum: it was written by an older version of openmm-timewarp or "
            f"not by openmm_timewarp.export; if you trust it, re-save it with "
            f"`timewarp resave {path}`"
        )
    if recorded != actual:
        raise ValueError(
            f"{path} is corrupt or was altered after it was written: its content does not match "
            "its checksum"
        )


def resave(path: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Re-save a model file (by default in place) with this version's checksum, same weights.

    For files written before model files had a checksum, or by ``torch.jit.save`` with the
    metadata: loading one runs its TorchScript, so re-save only files you trust.
    """
    path = Path(path)
    metadata = _read_metadata(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    return save_module(module, Path(output) if output is not None else path, metadata)


def _read_metadata(path: Path) -> ModelMetadata:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith(f"extra/{METADATA_FILE}")]
            if not names:
                raise ValueError(
                    f"{path} has no {METADATA_FILE}: export it with openmm_timewarp.export"
                )
            return ModelMetadata.from_json(archive.read(names[0]).decode())
    except Exception as error:  # zipfile raises many kinds on damaged archives
        raise ValueError(f"{path} is not a TorchScript proposal-model file: {error!r}") from error


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """The metadata of the proposal-model file ``path``, its checksum verified, without loading
    its code."""
    verify_checksum(path)
    return _read_metadata(Path(path))


def read_model(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, ModelMetadata]:
    """The module of the proposal-model file ``path`` (on the CPU), its checksum verified, and
    its metadata."""
    metadata = read_metadata(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:  # a damaged zip structure that the checksum cannot see
            raise ValueError(f"cannot load {path}: {str(error).splitlines()[0]}") from error
    return module, metadata
