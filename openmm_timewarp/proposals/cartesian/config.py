"""Sizes of the Timewarp flow and the named presets.

One "coupling" here is Timewarp's coupling layer: an affine update of the position half followed by
an affine update of the auxiliary half, each with its own atom transformer. The paper's models
(Klein et al. 2023) have 8 such couplings with 3 encoder layers (alanine dipeptide, about 36M
parameters) and 12 with 6 layers (dipeptides, about 106M parameters).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

DEFAULT_LENGTH_SCALES_NM = (0.1, 0.2, 0.5, 0.7, 1.0, 1.2)


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of a :class:`~openmm_timewarp.proposals.cartesian.TimewarpProposal`.

    Attributes:
        num_atom_types: size of the atom-type vocabulary (from the model's metadata).
        num_couplings: coupling layers, each updating the position half and then the auxiliary half.
        num_layers: post-LN encoder layers in each atom transformer.
        width: hidden size of each atom's feature vector.
        feedforward: hidden size of the encoder layers' feed-forward block.
        head_dim: value size of each kernel-attention head (one head per length scale).
        atom_embedding_dim: size of the learned per-type embedding.
        length_scales_nm: RBF length scales of the kernel self-attention, in nm.
        max_log_scale: bound on each coupling's log-scale (a soft clamp, tanh), for stability.
    """

    num_atom_types: int
    num_couplings: int = 4
    num_layers: int = 1
    width: int = 48
    feedforward: int = 96
    head_dim: int = 8
    atom_embedding_dim: int = 16
    length_scales_nm: tuple[float, ...] = DEFAULT_LENGTH_SCALES_NM
    max_log_scale: float = 3.0

    def __post_init__(self) -> None:
        for name in ("num_atom_types", "num_couplings", "num_layers", "width", "feedforward"):
            if getattr(self, name) < 1:
                raise ValueError(f"FlowConfig.{name} must be a positive integer")
        if self.head_dim < 1 or self.atom_embedding_dim < 1:
            raise ValueError("FlowConfig.head_dim and atom_embedding_dim must be positive")
        if not self.length_scales_nm or min(self.length_scales_nm) <= 0:
            raise ValueError("FlowConfig.length_scales_nm must be a non-empty list of positive nm")
        if self.max_log_scale <= 0:
            raise ValueError("FlowConfig.max_log_scale must be positive")

    def to_dict(self) -> dict:
        """Plain types, for checkpoints and the training summary of a model file."""
        fields = asdict(self)
        fields["length_scales_nm"] = list(self.length_scales_nm)
        return fields

    @classmethod
    def from_dict(cls, fields: dict) -> FlowConfig:
        fields = dict(fields)
        fields["length_scales_nm"] = tuple(fields.get("length_scales_nm", DEFAULT_LENGTH_SCALES_NM))
        return cls(**fields)


# Sizes without the vocabulary, which comes from the model's metadata.
_PRESET_SIZES: dict[str, dict] = {
    # Trains on 2 CPU cores in hours (about 0.1 s per step at batch 64) and proposes a few thousand
    # alanine-dipeptide moves per second (docs/benchmarks.md, "Proposal throughput").
    "cpu-small": dict(
        num_couplings=4, num_layers=1, width=48, feedforward=96, head_dim=8, atom_embedding_dim=16
    ),
    # The published sizes, for GPUs.
    "paper-ad": dict(
        num_couplings=8,
        num_layers=3,
        width=128,
        feedforward=2048,
        head_dim=128,
        atom_embedding_dim=64,
    ),
    "paper-2aa": dict(
        num_couplings=12,
        num_layers=6,
        width=128,
        feedforward=2048,
        head_dim=128,
        atom_embedding_dim=64,
    ),
}

PRESETS: tuple[str, ...] = tuple(_PRESET_SIZES)


def preset(name: str, num_atom_types: int, **overrides) -> FlowConfig:
    """The config of preset ``name`` (one of :data:`PRESETS`) for a vocabulary of that size."""
    if name not in _PRESET_SIZES:
        raise ValueError(f"unknown flow preset {name!r}; choose one of {PRESETS}")
    return replace(FlowConfig(num_atom_types=num_atom_types, **_PRESET_SIZES[name]), **overrides)
