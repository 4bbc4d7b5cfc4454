"""The proposal-model contract: writing, reading and checking proposal-model files.

A proposal model is a TorchScript module with the attributes ``noise_dim``, ``tau``,
``num_atoms`` and ``num_atom_types``, a ``forward(positions, atom_types, noise) ->
(proposals, logQRatio)`` and its many-chain form ``forward_chains`` (the same for C chains at
once); its metadata travel inside the file as the extra file ``timewarp.json``
(see docs/contract.md). This module is the one place that knows the file format: :func:`export`
writes it, :func:`load_model` and :func:`load_metadata` read it, and the topology helpers turn an
OpenMM Topology into the model's atom type codes and chiral centres.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from openmm import app

from openmm_timewarp.models.package import is_package, load_package, package_metadata

FORMAT_VERSION = 1
METADATA_FILE = "timewarp.json"
#: SHA-256 of the rest of the file (docs/trust.md), an extra file beside the metadata.
CHECKSUM_FILE = "timewarp.sha256"
#: Records left out of the checksum: the checksum itself, and the archive's id that torch
#: derives from all records (so from the checksum too).
_UNHASHED_RECORDS = (f"extra/{CHECKSUM_FILE}", ".data/serialization_id")
BUNDLED_MODEL_DIR = Path(__file__).parent
MODEL_FAMILIES = (
    "timewarp-flow",
    "ic-conditional",
    "ic-independent",
    "ic-mixture",
    "ic-rotor",
    "simple",
)
ATOM_TYPE_SCHEMES = ("element", "residue-atom", "peptide-atom")
#: Residues the ``peptide-atom`` scheme types by atom name alone (``CA``, ``HB2``, ...): the 20
#: amino acids, amber14's protonation variants and the ACE / NME / NHE caps.
PEPTIDE_RESIDUES = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "ASH CYM CYX GLH HID HIE HIP LYN ACE NME NHE".split()
)


@dataclass
class ModelMetadata:
    """What a proposal-model file says about itself (stored as ``timewarp.json``)."""

    name: str
    family: str
    tau_ps: float
    temperature_K: float
    forcefield: str
    atom_type_scheme: str
    atom_types: list[str]
    num_atoms: int | None = None
    training: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.family not in MODEL_FAMILIES:
            raise ValueError(
                f"unknown model family {self.family!r}; expected one of {MODEL_FAMILIES}"
            )
        if self.atom_type_scheme not in ATOM_TYPE_SCHEMES:
            raise ValueError(
                f"unknown atom-type scheme {self.atom_type_scheme!r}; "
                f"expected one of {ATOM_TYPE_SCHEMES}"
            )
        if not (math.isfinite(self.tau_ps) and self.tau_ps > 0):
            raise ValueError(f"tau_ps must be a positive number of picoseconds, got {self.tau_ps}")
        if not (math.isfinite(self.temperature_K) and self.temperature_K > 0):
            raise ValueError(f"temperature_K must be positive, got {self.temperature_K}")
        if not self.atom_types or len(set(self.atom_types)) != len(self.atom_types):
            raise ValueError("atom_types must be a non-empty list of distinct labels")
        if self.num_atoms is not None and self.num_atoms < 1:
            raise ValueError(f"num_atoms must be positive or None (any), got {self.num_atoms}")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"model file format {self.format_version} is not supported by this version of "
                f"openmm-timewarp (format {FORMAT_VERSION}); re-export the model"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            fields = json.loads(text)
            return cls(**fields)
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"malformed {METADATA_FILE}: {error}") from error


class ChainBatchedProposal(torch.nn.Module):
    """Base of proposal models whose ``forward`` is the one-chain case of ``forward_chains``.

    Subclasses define ``forward_chains(positions [C, N, 3], atom_types [N], noise [C, B, N, d])``
    (docs/contract.md); ``forward`` then needs no second implementation.
    """

    def forward(
        self, positions: torch.Tensor, atom_types: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proposals, log_q_ratio = self.forward_chains(
            positions.unsqueeze(0), atom_types, noise.unsqueeze(0)
        )
        return proposals[0], log_q_ratio[0]


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
    generator = torch.Generator().manual_seed(0)
    if example_positions is None:
        num_atoms = metadata.num_atoms or len(metadata.atom_types)
        example_positions = torch.randn(num_atoms, 3, generator=generator) * 0.3
    num_atoms = example_positions.shape[0]
    if metadata.atom_type_scheme == "residue-atom":
        atom_types = torch.arange(num_atoms, dtype=torch.int64)
    else:
        atom_types = torch.randint(len(metadata.atom_types), (num_atoms,), generator=generator)
    check_contract(scripted, example_positions, atom_types)
    return save_module(scripted, path, metadata)


def save_module(module: torch.nn.Module, path: str | os.PathLike, metadata: ModelMetadata) -> Path:
    """Script ``module`` (unless it is) and save it with ``metadata`` as ``timewarp.json`` and
    the checksum of its content, which :func:`load_metadata` and :func:`load_model` verify."""
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
        torch.jit.save(scripted, str(path), _extra_files=extra_files)
    verify_checksum(path)
    return path


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
    target = Path(output) if output is not None else path
    temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    save_module(module, temporary, metadata)
    temporary.replace(target)
    return target


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
    """Read the metadata of a proposal-model file, its checksum verified, without loading its
    code."""
    path = resolve_model_path(model)
    if is_package(path):
        return ModelMetadata.from_json(package_metadata(path)[METADATA_FILE])
    verify_checksum(path)
    return _read_metadata(path)


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


def load_model(model: str | os.PathLike) -> tuple[torch.nn.Module, ModelMetadata]:
    """Load a proposal-model file (path or bundled name; a TorchScript module, or a
    ``CompiledProposal`` for an AOTInductor package), its checksum verified, and its metadata."""
    path = resolve_model_path(model)
    metadata = load_metadata(path)
    if is_package(path):
        return load_package(path), metadata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:  # a damaged zip structure that the checksum cannot see
            raise ValueError(f"cannot load {path}: {str(error).splitlines()[0]}") from error
    return module, metadata


def residue_atom_label(atom: app.topology.Atom) -> str:
    """The ``residue-atom`` label of an atom: ``"<residue index>:<residue name>:<atom name>"``."""
    return f"{atom.residue.index}:{atom.residue.name}:{atom.name}"


def atom_types_for_topology(topology: app.Topology, metadata: ModelMetadata) -> np.ndarray:
    """Type codes of the Topology's atoms in the model's vocabulary (int64, one per atom)."""
    atoms = list(topology.atoms())
    if metadata.num_atoms is not None and len(atoms) != metadata.num_atoms:
        raise ValueError(
            f"the model {metadata.name!r} is for {metadata.num_atoms} atoms, "
            f"the Topology has {len(atoms)}"
        )
    if metadata.atom_type_scheme == "element":
        labels = [atom.element.symbol if atom.element is not None else "?" for atom in atoms]
    elif metadata.atom_type_scheme == "peptide-atom":
        others = sorted({a.residue.name for a in atoms if a.residue.name not in PEPTIDE_RESIDUES})
        if others:
            raise ValueError(
                f"the model {metadata.name!r} is for peptides of the 20 amino acids; the Topology "
                f"has other residues: {', '.join(others[:10])} (remove solvent and ligands)"
            )
        labels = [atom.name for atom in atoms]
    else:
        labels = [residue_atom_label(atom) for atom in atoms]
    if metadata.atom_type_scheme != "element":
        _check_peptide_atom_elements(atoms)
    index = {label: code for code, label in enumerate(metadata.atom_types)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(
            f"atoms not in the vocabulary of model {metadata.name!r} "
            f"({metadata.atom_type_scheme} scheme): {', '.join(unknown[:10])}"
            + (" ..." if len(unknown) > 10 else "")
        )
    if metadata.atom_type_scheme == "residue-atom" and len(set(labels)) != len(labels):
        raise ValueError("the Topology has atoms with the same residue and atom name")
    return np.array([index[label] for label in labels], dtype=np.int64)


def _check_peptide_atom_elements(atoms: list[app.topology.Atom]) -> None:
    """Refuse peptide atoms whose name contradicts their element (a name swap such as N <-> CA
    would otherwise give the model other atoms than it names, and acceptance zero)."""
    wrong = [
        f"{residue_atom_label(atom)} is {atom.element.symbol}"
        for atom in atoms
        if atom.residue.name in PEPTIDE_RESIDUES
        and atom.element is not None
        and not atom.name.lstrip("0123456789").upper().startswith(atom.element.symbol.upper())
    ]
    if wrong:
        raise ValueError(
            "atom names do not fit their elements (in amino acids a name starts with its "
            f"element): {', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}; fix the names"
        )


def chiral_centres(topology: app.Topology) -> list[tuple[int, int, int, int]]:
    """``(CA, N, C, CB)`` atom indices of every residue that has all four (non-Gly amino acids).

    The integrator keeps the sign of ``dot(b - a, cross(c - a, d - a))`` for each quadruple
    ``(a, b, c, d)``, so no proposal inverts an L-amino acid into a D one.
    """
    centres = []
    for residue in topology.residues():
        by_name = {atom.name: atom.index for atom in residue.atoms()}
        if all(name in by_name for name in ("CA", "N", "C", "CB")):
            centres.append(tuple(by_name[name] for name in ("CA", "N", "C", "CB")))
    return centres
