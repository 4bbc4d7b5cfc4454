"""Timewarp's augmented conditional normalising flow (Klein et al. 2023) as a proposal model."""

from .config import PRESETS, FlowConfig, preset
from .flow import TimewarpProposal, count_parameters

__all__ = ["PRESETS", "FlowConfig", "TimewarpProposal", "count_parameters", "preset"]
