# Two commands on a fresh machine: `make demo` runs the main example, `make test` runs the checks.
# Both create the virtual environment they need: torch first (the CPU build, pinned), then the
# pinned build tools, then this package built against that torch (--no-build-isolation), with the
# plugin's C++ tests, which `make test` runs through pytest (tests/test_plugin_cpp.py).

VENV ?= .venv
PYTHON := $(VENV)/bin/python
# The CPU build of torch, named by its local version label: PyPI's Linux wheel is the CUDA build
# (several GB). PyTorch's CPU index serves it (asked for torch alone; its dependencies come from
# PyPI); a machine with a wheel cache (pip's find-links) takes it from there. macOS wheels on PyPI
# are CPU builds without the label.
ifeq ($(shell uname -s),Darwin)
TORCH ?= torch==2.13.0
else
TORCH ?= torch==2.13.0+cpu
endif
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
OPENMM ?= openmm==8.6.1
BUILD_TOOLS := scikit-build-core==1.1.2 swig==4.5.1 cmake==4.4.5 ninja==1.13.2
PLUGIN_SOURCES := CMakeLists.txt pyproject.toml $(shell find plugin -type f)

.PHONY: test demo lint install-check

$(PYTHON):
	python3 -m venv $(VENV)

$(VENV)/.installed: $(PYTHON) $(PLUGIN_SOURCES)
	$(PYTHON) -m pip install --no-deps "$(TORCH)" --extra-index-url $(TORCH_INDEX)
	$(PYTHON) -m pip install "$(TORCH)" $(BUILD_TOOLS) $(OPENMM)
	$(PYTHON) -m pip install --no-build-isolation -e ".[test]" -C cmake.define.TIMEWARP_BUILD_TESTS=ON
	touch $@

lint: $(VENV)/.installed
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check --extend-exclude "*.md" .

test: lint
	$(PYTHON) -m pytest

# Samples alanine dipeptide with the bundled model; the last line printed names the plot.
demo: $(VENV)/.installed
	$(PYTHON) examples/alanine_dipeptide.py

# The install into an existing environment (README, Install), from a fresh venv: core only, then
# a short run of the integrator and the CLI's message about its extra. Bounded in time.
install-check:
	timeout 1800 bash .ci/install_check "$(TORCH)" "$(TORCH_INDEX)" "$(OPENMM)"
