"""``TimewarpIntegrator``: the Python face of the C++ plugin's integrator.

It resolves the proposal model (a path or a bundled name), derives atom-type codes and chiral
centres from an OpenMM Topology with the model's metadata, accepts ``openmm.unit`` quantities,
and returns quantities where OpenMM's own integrators do.  Everything else (the Metropolis-
Hastings chain, proposal batching, checkpoints, XML serialization) lives in the plugin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from openmm_timewarp import _timewarpplugin, timewarpplugin
from openmm_timewarp.models.metadata import ModelMetadata, atom_types_for_topology, chiral_centres
from openmm_timewarp.models.resolve import load_metadata, model_file_for_topology
from openmm_timewarp.sampling.diagnostics import (
    STUCK_AFTER_PROPOSALS,
    is_stuck,
    warn_if_all_non_finite,
    warn_stuck,
)

__all__ = ["TimewarpIntegrator"]


def _plugin_library() -> Path:
    """The plugin library, installed next to its Python extension."""
    name = {"darwin": "libTimewarpPlugin.dylib", "win32": "TimewarpPlugin.dll"}.get(
        sys.platform, "libTimewarpPlugin.so"
    )
    return Path(_timewarpplugin.__file__).parent / name


# Registers the integrator's kernel with every platform OpenMM has loaded.
openmm.Platform.loadPluginLibrary(str(_plugin_library()))


def _in_units(value: unit.Quantity | float, target: unit.Unit, name: str) -> float:
    if unit.is_quantity(value):
        if not value.unit.is_compatible(target):
            raise ValueError(f"{name} must be in units compatible with {target}, got {value}")
        return float(value.value_in_unit(target))
    return float(value)


class TimewarpIntegrator(timewarpplugin.TimewarpIntegrator):
    """Samples the Boltzmann distribution with learned proposals and an exact MH test.

    Parameters
    ----------
    model
        A proposal-model file or the name of a bundled model (``"alanine-dipeptide"``, or the
        transferable ``"dipeptides"``, which is built for the given topology on first use).
    temperature
        The temperature, a quantity or a number in kelvin.
    topology
        The System's Topology; atom types and chiral centres are derived from it unless given.
    atom_types
        The model's atom-type code of every particle.
    chiral_centres
        Quadruples of particle indices whose signed volume must keep its sign; ``[]`` for none.
    max_proposal_batch
        The largest number of proposals drawn per model call; ``None`` takes the model's default:
        ``DEFAULT_INDEPENDENT_BATCH`` (1024) for independence models, which draw a full batch
        per call and get faster with larger ones, ``DEFAULT_CONDITIONAL_BATCH`` (64) as the bound
        of the adaptive batch of state-dependent models (docs/benchmarks.md has the measurement).
    exploration
        Accept by an energy threshold instead of the MH test (fast, not exact).
    exploration_threshold
        The threshold of exploration mode, a quantity or a number in kJ/mol.
    seed
        Seed of the integrator's random numbers; 0 picks a different one each time.
    model_threads
        Torch threads for the model's calls on the CPU; 0 keeps torch's own setting. One thread
        measured fastest (as fast as two on an idle machine, many times faster on a busy one).
    model_device
        ``"auto"``: the model runs on the Context's GPU on the CUDA platform when torch has CUDA;
        ``"cpu"``: always on the CPU (faster for small models with small batches).
    compiled
        For a transferable model: run its proposal for this molecule as an AOTInductor package
        compiled for this machine's CPU (on first use, about a minute; cached like the
        TorchScript proposal) instead of TorchScript. The same proposals, several times fewer
        seconds per call (docs/benchmarks.md); worth it for runs longer than a few minutes. Off
        by default because it needs a C++ compiler and the minute; without a compiler it warns
        and uses TorchScript. Other models ignore it (compile one with
        ``openmm_timewarp.models.compiled.export_compiled``).

    The model file is read once, here; ``XmlSerializer`` embeds it, so a serialized integrator
    deserializes anywhere ``openmm_timewarp`` is imported.

    ``step`` warns once (``diagnostics.StuckChainWarning``) when the chain has accepted none of
    its first ``diagnostics.STUCK_AFTER_PROPOSALS`` proposals.
    """

    # Each warning is given once per integrator.
    _warned_non_finite = False
    _stuck_checked = False

    def __init__(
        self,
        model: str | os.PathLike,
        temperature: unit.Quantity | float,
        topology: app.Topology | None = None,
        atom_types: Sequence[int] | np.ndarray | None = None,
        chiral_centres: Sequence[Sequence[int]] | None = None,
        max_proposal_batch: int | None = None,
        exploration: bool = False,
        exploration_threshold: unit.Quantity | float = 300.0 * unit.kilojoule_per_mole,
        seed: int = 0,
        model_threads: int = 1,
        model_device: str = "auto",
        compiled: bool = False,
    ) -> None:
        path = model_file_for_topology(model, topology, compiled)
        self._metadata = load_metadata(path)
        if atom_types is None:
            if topology is None:
                raise ValueError("give the System's topology, or atom_types explicitly")
            atom_types = atom_types_for_topology(topology, self._metadata)
        if chiral_centres is None:
            chiral_centres = _chiral_centres_of(topology)
        centres = np.asarray(chiral_centres, dtype=np.int64).reshape(-1)
        if centres.size % 4:
            raise ValueError("chiral_centres must be quadruples of particle indices")
        super().__init__(
            str(path),
            _in_units(temperature, unit.kelvin, "temperature"),
            [int(code) for code in np.asarray(atom_types).reshape(-1)],
            [int(index) for index in centres],
        )
        if max_proposal_batch is not None:
            self.setMaxProposalBatch(max_proposal_batch)
        self.setExplorationMode(exploration, exploration_threshold)
        self.setRandomNumberSeed(seed)
        self.setModelThreads(model_threads)
        self.setModelDevice(model_device)

    @classmethod
    def cast(cls, integrator: openmm.Integrator) -> TimewarpIntegrator:
        """The TimewarpIntegrator behind an ``openmm.Integrator``, e.g. one that
        ``XmlSerializer.deserialize`` returns; the result keeps ``integrator`` alive. The XML
        carries the model and its SHA-1, which the plugin checked while deserializing."""
        if isinstance(integrator, cls):
            return integrator
        if not timewarpplugin.TimewarpIntegrator.isinstance(integrator):
            raise TypeError(f"{type(integrator).__name__} is not a TimewarpIntegrator")
        view = cls.__new__(cls)
        view.this = timewarpplugin.TimewarpIntegrator.cast(integrator).this
        view._owner = integrator
        view._metadata = None
        return view

    def step(self, steps: int) -> None:
        """Take ``steps`` Metropolis-Hastings steps. Warns once if every proposal so far was
        non-finite (a broken model), and once if the chain accepted none of its first
        ``diagnostics.STUCK_AFTER_PROPOSALS`` proposals (``diagnostics.StuckChainWarning``)."""
        super().step(steps)
        if not self._warned_non_finite:
            self._warned_non_finite = warn_if_all_non_finite(
                f"TimewarpIntegrator ({self.getModelPath()})",
                self.getNumProposed(),
                self.getNumRejectedNonFinite(),
            )
        if not self._stuck_checked and self.getNumProposed() >= STUCK_AFTER_PROPOSALS:
            self._stuck_checked = True
            if is_stuck(self.getNumProposed(), self.getNumAccepted()):
                warn_stuck(
                    "TimewarpIntegrator", self.getNumProposed(), self.getNumRejectedNonFinite()
                )

    def getMetadata(self) -> ModelMetadata:
        """The proposal model's metadata (``timewarp.json``), from the model the plugin loaded."""
        if self._metadata is None:
            self._metadata = ModelMetadata.from_json(self.getModelMetadata())
        return self._metadata

    def getTemperature(self) -> unit.Quantity:
        """The temperature of the Boltzmann distribution sampled."""
        return super().getTemperature() * unit.kelvin

    def setTemperature(self, temperature: unit.Quantity | float) -> None:
        """Set the temperature (a quantity or a number in kelvin) of the MH test and the
        velocity draw from the next step on, as multi-state samplers (replica exchange,
        simulated tempering, openmmtools' ThermodynamicState) do."""
        super().setTemperature(_in_units(temperature, unit.kelvin, "temperature"))

    def getExplorationThreshold(self) -> unit.Quantity:
        return super().getExplorationThreshold() * unit.kilojoule_per_mole

    def setExplorationMode(
        self,
        enabled: bool,
        threshold: unit.Quantity | float = 300.0 * unit.kilojoule_per_mole,
    ) -> None:
        """Accept by ``U' - U < threshold`` (quantity or kJ/mol) instead of the MH test."""
        super().setExplorationMode(
            bool(enabled), _in_units(threshold, unit.kilojoule_per_mole, "threshold")
        )


def _chiral_centres_of(topology: app.Topology | None) -> list[tuple[int, int, int, int]]:
    return [] if topology is None else chiral_centres(topology)
