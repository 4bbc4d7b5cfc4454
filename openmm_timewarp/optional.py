"""Optional dependencies: the extra of ``pyproject.toml`` that installs each, and a clear error.

``import openmm_timewarp`` and the integrator need only openmm, torch and numpy; the data tools,
analysis and references import what they need through :func:`require`, so that a missing package
says which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The extra that installs each optional top-level module.
EXTRA_OF_MODULE = {
    "Bio": "cli",
    "PeptideBuilder": "cli",
    "mdtraj": "analysis",
    "deeptime": "analysis",
    "matplotlib": "analysis",
    "openmmtools": "reference",
    "pymbar": "reference",  # installed with openmmtools
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str) -> ModuleType:
    """Import ``module`` (an optional dependency or one of its submodules).

    Raises:
        MissingExtraError: the package is not installed; ``name`` is its top-level module.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != top:
            raise  # the package is there but one of its own dependencies is not
        extra = EXTRA_OF_MODULE[top]
        raise MissingExtraError(
            f"{top} is not installed; it comes with pip install 'openmm-timewarp[{extra}]'",
            name=top,
        ) from None
