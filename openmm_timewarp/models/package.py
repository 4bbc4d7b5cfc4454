"""Reading AOTInductor packages: the compiled format of a proposal model.

A package is the zip archive that ``torch._inductor.aoti_compile_and_package`` writes (records
under ``data/aotinductor/``); the contract attributes, ``timewarp.json`` and the checksum are
entries of its metadata, which libtorch's ``AOTIModelPackageLoader::get_metadata`` returns to
the plugin. This module only reads packages; :mod:`openmm_timewarp.models.compiled` writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import torch

METADATA_ENTRY = "timewarp.json"
CHECKSUM_ENTRY = "timewarp.sha256"
_PACKAGE_PREFIX = "data/aotinductor/"
_METADATA_SUFFIX = "_metadata.json"
_SERIALIZATION_ID = ".data/serialization_id"


def _record(name: str) -> str:
    """A record's name without the archive's top folder (named after the file)."""
    return name.partition("/")[2]


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip archive with the AOTInductor package layout."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(_record(n).startswith(_PACKAGE_PREFIX) for n in archive.namelist())
    except Exception:  # zipfile raises many kinds on damaged archives; the caller reports them
        return False


def is_metadata_record(name: str) -> bool:
    record = _record(name)
    return record.startswith(_PACKAGE_PREFIX) and record.endswith(_METADATA_SUFFIX)


def package_checksum(archive: zipfile.ZipFile) -> str:
    """SHA-256 of a package: every record but the archive id, with the metadata records hashed
    as their entries without the checksum entry (which they carry)."""
    digest = hashlib.sha256()
    for name in sorted(archive.namelist(), key=_record):
        record = _record(name)
        if record == _SERIALIZATION_ID:
            continue
        data = archive.read(name)
        if is_metadata_record(name):
            entries = json.loads(data)
            entries.pop(CHECKSUM_ENTRY, None)
            data = json.dumps(entries, sort_keys=True).encode()
        digest.update(f"{record}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def package_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata entries of a package whose checksum matches; ``ValueError`` otherwise."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            records = [n for n in archive.namelist() if is_metadata_record(n)]
            entries = [json.loads(archive.read(name)) for name in records]
            actual = package_checksum(archive)
    except Exception as error:  # zipfile and json raise many kinds on damaged archives
        raise ValueError(
            f"{path} is not an AOTInductor proposal-model package (or is truncated or corrupt): "
            f"{error!r}"
        ) from error
    ours = [entry for entry in entries if METADATA_ENTRY in entry]
    if not ours:
        raise ValueError(
            f"{path} has no {METADATA_ENTRY} in its metadata: write packages with "
            "openmm_timewarp.models.compiled.export_compiled"
        )
    if any(entry.get(CHECKSUM_ENTRY) != actual for entry in ours):
        raise ValueError(
            f"{path} is corrupt or was altered after it was written: its content does not match "
            "the checksum in its metadata"
        )
    return ours[0]


class CompiledProposal(torch.nn.Module):
    """A loaded package with the contract attributes, called like the TorchScript module."""

    def __init__(self, path: str | os.PathLike, metadata: dict[str, str]) -> None:
        super().__init__()
        self.noise_dim = int(metadata["noise_dim"])
        self.tau = float(metadata["tau"])
        self.num_atoms = int(metadata["num_atoms"])
        self.num_atom_types = int(metadata["num_atom_types"])
        self.independent = metadata.get("independent") == "true"
        self._runner = torch._inductor.aoti_load_package(str(path))

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals, log_q_ratio = self._runner(positions, atom_types, noise)
        return proposals, log_q_ratio

    def forward_chains(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The contract's many-chain form as one compiled ``forward`` call per chain (the package
        holds ``forward`` only): the same results, without batching across chains."""
        outputs = [
            self(state, atom_types, draws) for state, draws in zip(positions, noise, strict=True)
        ]
        return torch.stack([o[0] for o in outputs]), torch.stack([o[1] for o in outputs])


def load_package(path: str | os.PathLike) -> CompiledProposal:
    """Load a package, its checksum verified first (its compiled code runs in this process)."""
    return CompiledProposal(path, package_metadata(path))
