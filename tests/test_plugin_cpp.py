"""The plugin's C++ tests (plugin/*/tests), run by ctest in the folder CMake built them in.

They are built with the plugin when CMake's TIMEWARP_BUILD_TESTS option is on, which `make test`
sets; the build records their folder in ``openmm_timewarp._built_against``.
"""

import subprocess

import pytest

from openmm_timewarp import _built_against

BUILD_WITH_TESTS = (
    "pip install --no-build-isolation --no-deps -e . -C cmake.define.TIMEWARP_BUILD_TESTS=ON"
)


def test_plugin_cpp_tests_pass():
    tests_dir = getattr(_built_against, "PLUGIN_TESTS_DIR", "")
    if not tests_dir:
        pytest.fail(
            f"the plugin was built without its C++ tests; build them with `{BUILD_WITH_TESTS}`"
        )
    result = subprocess.run(
        [
            _built_against.CTEST_COMMAND,
            "--test-dir",
            tests_dir,
            "--output-on-failure",
            "--no-tests=error",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
