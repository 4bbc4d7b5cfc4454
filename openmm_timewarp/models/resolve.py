"""Which file a model name means: a bundled model's name or a path, and for a transferable model
its proposal for one molecule, built on first use and kept in a private, verified cache.

``TimewarpIntegrator`` and the many-chain sampler load what :func:`model_file_for_topology`
returns; :func:`load_model` and :func:`load_metadata` read a file given by name or path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import stat
import warnings
from pathlib import Path

import torch
from openmm import app

from openmm_timewarp.files import file_sha256, write_atomically
from openmm_timewarp.models.compiled import export_compiled
from openmm_timewarp.models.files import export, read_metadata, read_model
from openmm_timewarp.models.metadata import METADATA_FILE, ModelMetadata
from openmm_timewarp.models.package import CompiledProposal, is_package, package_metadata
from openmm_timewarp.proposals.backbone.proposal import backbone_proposal
from openmm_timewarp.proposals.rotors.proposal import rotor_proposal

logger = logging.getLogger(__name__)

BUNDLED_MODEL_DIR = Path(__file__).parent
#: The code that builds a transferable model's proposal and writes it: its text is part of the
#: cache key, so a new version rebuilds what it would build differently.
_PROPOSAL_BUILDERS = ("models", "proposals/ic", "proposals/rotors", "proposals/backbone")
#: For each transferable family, what builds one molecule's proposal from its network.
_TRANSFERABLE_PROPOSALS = {"ic-rotor": rotor_proposal, "ic-backbone": backbone_proposal}


def bundled_models() -> list[str]:
    """Names of the models shipped with the package."""
    return sorted(path.stem for path in BUNDLED_MODEL_DIR.glob("*.pt"))


def resolve_model_path(model: str | os.PathLike) -> Path:
    """The file of ``model``: a bundled model's name, else a path.

    A string that names a bundled model means that model, whatever files the working folder
    holds (write ``./name`` for a file there); a ``Path`` means that file, or the bundled model
    of that name if no such file exists.
    """
    bundled = bundled_models()
    if isinstance(model, str) and model in bundled:
        return BUNDLED_MODEL_DIR / f"{model}.pt"
    path = Path(model)
    if path.is_file():
        return path
    if str(model) in bundled:
        return BUNDLED_MODEL_DIR / f"{model}.pt"
    raise ValueError(
        f"no proposal model {str(model)!r}: not a file, and not a bundled model "
        f"(bundled: {', '.join(bundled) or 'none'})"
    )


def load_metadata(model: str | os.PathLike) -> ModelMetadata:
    """Read the metadata of a proposal-model file (path or bundled name), its checksum verified,
    without loading its code."""
    path = resolve_model_path(model)
    if is_package(path):
        return ModelMetadata.from_json(package_metadata(path)[METADATA_FILE])
    return read_metadata(path)


def load_model(model: str | os.PathLike) -> tuple[torch.nn.Module, ModelMetadata]:
    """Load a proposal-model file (path or bundled name; a TorchScript module, or a
    ``CompiledProposal`` for an AOTInductor package), its checksum verified, and its metadata."""
    path = resolve_model_path(model)
    if is_package(path):
        # One read of the package's metadata, its checksum verified once, serves both.
        record = package_metadata(path)
        return CompiledProposal(path, record), ModelMetadata.from_json(record[METADATA_FILE])
    return read_model(path)


def _cache_dir() -> Path:
    """The cache folder, created private to the user; refused if others could plant files."""
    root = os.environ.get("OPENMM_TIMEWARP_CACHE")
    if root:
        folder = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        folder = base / "openmm-timewarp"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.stat()
    if hasattr(os, "getuid") and (
        status.st_uid != os.getuid() or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise ValueError(
            f"the model cache {folder} is not private to you (another owner, or writable by "
            "others), so files there cannot be trusted; point OPENMM_TIMEWARP_CACHE to a folder "
            "of your own"
        )
    return folder


def _valid_cache_entry(cached: Path, record: Path) -> bool:
    """Whether ``cached`` is the file built here: its SHA-256 is the one recorded at build time."""
    if not (cached.is_file() and record.is_file()):
        return False
    return record.read_text().strip() == file_sha256(cached)


def model_file_for_topology(
    model: str | os.PathLike, topology: app.Topology | None, compiled: bool = False
) -> Path:
    """The file to load for ``model`` on ``topology``: the model's own file, or for a
    transferable network (``ic-rotor``, ``ic-backbone``) its proposal for this molecule.

    That proposal is built on first use and cached (``$OPENMM_TIMEWARP_CACHE``, else
    ``~/.cache/openmm-timewarp``) under a hash of the model file, the molecule and the code that
    builds proposals, so later loads and checkpoints find it. With ``compiled`` the cached
    proposal is an AOTInductor package for this machine's CPU and torch
    (:func:`openmm_timewarp.models.compiled.export_compiled`; about a minute on first use, a C++
    compiler needed): the same proposals to float32 rounding at a fraction of TorchScript's cost
    per call (docs/benchmarks.md, "Compiled proposals for the transferable model"). Where
    compiling fails, the TorchScript proposal is returned with a warning.
    """
    path = resolve_model_path(model).resolve()
    metadata = load_metadata(path)
    build_proposal = _TRANSFERABLE_PROPOSALS.get(metadata.family)
    if build_proposal is None or metadata.num_atoms is not None:
        return path
    if topology is None:
        raise ValueError(
            f"the model {metadata.name!r} is transferable: it is built for each molecule from its "
            "Topology; give the topology"
        )
    atoms = list(topology.atoms())
    digest = hashlib.sha256(path.read_bytes())
    package = Path(__file__).parents[1]
    for folder in _PROPOSAL_BUILDERS:
        for source in sorted((package / folder).glob("*.py")):
            digest.update(source.read_bytes())
    for atom in atoms:
        digest.update(f"{atom.residue.index}:{atom.residue.name}:{atom.name};".encode())
    for bond in topology.bonds():
        digest.update(f"{bond[0].index}-{bond[1].index};".encode())
    cached = _cache_dir() / f"{metadata.name}-{digest.hexdigest()[:20]}.pt"
    record = cached.with_name(f"{cached.name}.sha256")
    # A package is native code: kept per instruction set and torch build.
    digest.update(f"{torch.__version__};{_cpu_flags()}".encode())
    package = cached.with_name(f"{metadata.name}-{digest.hexdigest()[:20]}.pt2")
    package_record = package.with_name(f"{package.name}.sha256")
    if compiled and _valid_cache_entry(package, package_record):
        return package
    if not compiled and _valid_cache_entry(cached, record):
        return cached
    network, _ = load_model(path)
    proposal = build_proposal(network, topology)
    molecule = molecule_metadata(metadata, proposal, topology)
    # The model first, then its record: a file without a matching record is rebuilt, never
    # trusted.
    if compiled:
        try:
            _compile(proposal, package, molecule)
        except Exception as error:  # no C++ compiler, or an op Inductor cannot lower
            warnings.warn(
                f"could not compile the proposal for {_sequence(topology)} ({error}); using "
                "the TorchScript proposal, which is slower per call",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            write_atomically(package_record, file_sha256(package))
            return package
        if _valid_cache_entry(cached, record):
            return cached
    export(proposal, cached, molecule)
    write_atomically(record, file_sha256(cached))
    return cached


def molecule_metadata(
    metadata: ModelMetadata, proposal: torch.nn.Module, topology: app.Topology
) -> ModelMetadata:
    """The metadata of a transferable model's (``metadata``) proposal built for ``topology``."""
    return ModelMetadata.for_molecule(
        proposal.labels,
        name=f"{metadata.name} for {_sequence(topology)}",
        family=metadata.family,
        tau_ps=metadata.tau_ps,
        temperature_K=metadata.temperature_K,
        forcefield=metadata.forcefield,
        training={"transferable_model": metadata.name, **metadata.training},
    )


def _compile(proposal: torch.nn.Module, package: Path, molecule: ModelMetadata) -> None:
    """Compile ``proposal`` into ``package``, saying why the first use takes a while."""
    logger.warning("compiling the proposal of %s (once per molecule and machine)", molecule.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        export_compiled(proposal, package, molecule)


def _cpu_flags() -> str:
    """The CPU's instruction-set flags (Linux), else the machine's architecture."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _sequence(topology: app.Topology) -> str:
    return "-".join(residue.name for residue in topology.residues())
