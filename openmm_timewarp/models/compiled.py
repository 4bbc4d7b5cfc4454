"""Writing proposal models as AOTInductor packages, the compiled model format.

:func:`export_compiled` traces a proposal module with ``torch.export`` (the batch dimension
dynamic), compiles it with ``torch._inductor.aoti_compile_and_package`` and stores the contract
attributes, ``timewarp.json`` and a checksum in the package's metadata, so the plugin runs it
behind the same ``forward(positions, atom_types, noise)`` as a TorchScript file
(docs/contract.md). Only ``forward`` is compiled (the Python side calls it once per chain for
``forward_chains``). Compiling takes from tens of seconds (a Gaussian walk) to
minutes (a flow); the package runs on the kind of device it was compiled for, and its CPU code
on processors with the compiling machine's instruction set.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch

from openmm_timewarp.models.checks import check_contract
from openmm_timewarp.models.files import _ContractModule, example_inputs
from openmm_timewarp.models.metadata import ModelMetadata
from openmm_timewarp.models.package import (
    CHECKSUM_ENTRY,
    METADATA_ENTRY,
    is_metadata_record,
    load_package,
    package_checksum,
    package_metadata,
)

#: The largest batch a package accepts (torch.export needs a bound; the plugin's batches are
#: at most ``max_proposal_batch``).
MAX_BATCH = 1 << 16
#: The most atoms a package for any atom count accepts.
MAX_ATOMS = 1 << 20


def _with_checksum(draft: Path, path: Path) -> None:
    """Copy the package ``draft`` to ``path`` with the checksum added to its metadata records."""
    with zipfile.ZipFile(draft) as archive:
        checksum = package_checksum(archive)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
            for info in archive.infolist():
                data = archive.read(info)
                if is_metadata_record(info.filename):
                    entries = json.loads(data) | {CHECKSUM_ENTRY: checksum}
                    data = json.dumps(entries).encode()
                target.writestr(info, data)


class ExportedProposal(NamedTuple):
    """A proposal traced by ``torch.export``: the program, the contract module it was traced
    from and the example inputs ``(positions, atom_types, noise)`` it was traced with."""

    program: torch.export.ExportedProgram
    module: torch.nn.Module
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def export_program(
    model: torch.nn.Module,
    metadata: ModelMetadata,
    example_positions: torch.Tensor | None = None,
    device: str = "cpu",
) -> ExportedProposal:
    """Trace ``model`` with the contract attributes of ``metadata`` (the module that ``export``
    scripts) by ``torch.export``, the batch dynamic and, for a model of any atom count, the atom
    count too; checked against the contract on ``example_positions`` (random if not given)."""
    if not isinstance(getattr(model, "noise_dim", None), int) or model.noise_dim < 1:
        raise ValueError("a proposal model needs a positive integer attribute `noise_dim`")
    wrapper = _ContractModule(model.eval(), metadata).to(device)
    generator = torch.Generator().manual_seed(0)
    example_positions, atom_types = example_inputs(metadata, example_positions, generator)
    num_atoms = example_positions.shape[0]
    positions = example_positions.float().to(device)
    atom_types = atom_types.to(device)
    check_contract(wrapper, positions, atom_types)
    noise = torch.randn(5, num_atoms, wrapper.noise_dim, generator=generator).to(device)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # A model for any atom count gets a dynamic one; else the integrator checks the count.
    atoms = (
        torch.export.Dim.STATIC
        if metadata.num_atoms
        else torch.export.Dim("atoms", min=1, max=MAX_ATOMS)
    )
    with torch.no_grad():
        program = torch.export.export(
            wrapper,
            (positions, atom_types, noise),
            dynamic_shapes=({0: atoms}, {0: atoms}, {0: batch, 1: atoms}),
        )
    return ExportedProposal(program, wrapper, (positions, atom_types, noise))


def export_compiled(
    model: torch.nn.Module,
    path: str | os.PathLike,
    metadata: ModelMetadata,
    example_positions: torch.Tensor | None = None,
    device: str = "cpu",
) -> Path:
    """Write ``model`` as an AOTInductor package that :class:`TimewarpIntegrator` loads.

    The same model and metadata as :func:`openmm_timewarp.export`; traced by
    :func:`export_program`, compiled for ``device`` (``"cpu"``, or ``"cuda"`` for a package that
    runs on the Context's GPU), and checked against the contract and against the uncompiled model
    for batches of 1 and 5. Returns the path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.suffix != ".pt2":
        raise ValueError(f"an AOTInductor package is a .pt2 file, got {path.name}")
    program, wrapper, inputs = export_program(model, metadata, example_positions, device)
    entries = {
        METADATA_ENTRY: metadata.to_json(),
        "noise_dim": str(wrapper.noise_dim),
        "tau": repr(wrapper.tau),
        "num_atoms": str(wrapper.num_atoms),
        "num_atom_types": str(wrapper.num_atom_types),
        "independent": "true" if wrapper.independent else "false",
    }
    with torch.no_grad(), tempfile.TemporaryDirectory(dir=path.parent) as folder:
        draft = Path(folder) / path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            torch._inductor.aoti_compile_and_package(
                program,
                package_path=str(draft),
                inductor_configs={"aot_inductor.metadata": entries},
            )
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.pt2")
        _with_checksum(draft, temporary)
    try:
        package_metadata(temporary)
        _check_same_outputs(wrapper, load_package(temporary), *inputs)
    except Exception:
        temporary.unlink()
        raise
    temporary.replace(path)
    return path


def _check_same_outputs(
    model: torch.nn.Module,
    compiled: torch.nn.Module,
    positions: torch.Tensor,
    atom_types: torch.Tensor,
    noise: torch.Tensor,
) -> None:
    """Raise ``ValueError`` unless the package computes what the model does (float32 rounding)."""
    check_contract(compiled, positions, atom_types)
    with torch.no_grad():
        for batch in (noise[:1], noise):
            expected = model(positions, atom_types, batch)
            actual = compiled(positions, atom_types, batch)
            for name, a, b in zip(("proposals", "logQRatio"), expected, actual, strict=True):
                if not torch.allclose(a, b, rtol=1e-4, atol=1e-4):
                    raise ValueError(
                        f"the compiled package's {name} differ from the model's by up to "
                        f"{float((a - b).abs().max()):.3g}: not writing it"
                    )
