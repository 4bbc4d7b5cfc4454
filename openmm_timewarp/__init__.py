"""openmm-timewarp: Timewarp as a drop-in OpenMM integrator.

``TimewarpIntegrator`` samples the Boltzmann distribution of an OpenMM System with large-time-step
proposals from a learned model and an exact Metropolis-Hastings test; ``export``, ``load_model``
and ``load_metadata`` write and read proposal-model files, ``export_compiled`` writes the same
model as an AOTInductor package (docs/contract.md).
"""

from openmm_timewarp.build_check import check_built_against

# Before the plugin library loads: a plugin built for another torch or OpenMM would crash.
check_built_against()

from openmm_timewarp.integrator import TimewarpIntegrator  # noqa: E402
from openmm_timewarp.models.compiled import export_compiled  # noqa: E402
from openmm_timewarp.models.contract import export, load_metadata, load_model  # noqa: E402

__all__ = ["TimewarpIntegrator", "export", "export_compiled", "load_metadata", "load_model"]
__version__ = "0.1.0"
