"""The plugin is C++ linked against one OpenMM and one torch: refuse others with a clear message.

CMake records the versions it built against in ``_built_against.py``; a different OpenMM or torch
release in the running environment would fail with undefined symbols or crash, so importing the
package checks first.  Local version labels (``+cpu``, ``+cu130``) may differ: CPU and CUDA builds
of one torch release share its C++ API.
"""

from __future__ import annotations

REBUILD = (
    "rebuild the plugin in this environment: `pip install --no-build-isolation --no-deps "
    "--force-reinstall .` from the openmm-timewarp source folder (README.md, Install)"
)


def release(version: str) -> str:
    """``version`` without its local label: ``2.13.0+cpu`` -> ``2.13.0``."""
    return version.split("+")[0]


def version_mismatches(
    built: dict[str, str], running: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(package, built-against version, running version) of each package whose release differs."""
    return [
        (package, built[package], running[package])
        for package in built
        if release(built[package]) != release(running[package])
    ]


def check_built_against() -> None:
    """Raise ImportError when the running OpenMM or torch is not what the plugin was built for."""
    import openmm.version
    import torch

    try:
        from openmm_timewarp import _built_against
    except ImportError:
        raise ImportError(f"openmm_timewarp's plugin is not built: {REBUILD}") from None
    built = {"OpenMM": _built_against.OPENMM_VERSION, "torch": _built_against.TORCH_VERSION}
    running = {"OpenMM": openmm.version.short_version, "torch": torch.__version__}
    mismatches = version_mismatches(built, running)
    if mismatches:
        differences = "; ".join(
            f"{package} {then} at build time, {now} now" for package, then, now in mismatches
        )
        raise ImportError(
            f"openmm_timewarp's plugin was built against another {mismatches[0][0]} "
            f"({differences}); {REBUILD}"
        )
