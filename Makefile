# Two commands on a fresh machine: `make demo` runs the main example, `make test` runs the checks.
# Both create the virtual environment they need: torch first (the CPU build, pinned), then the
# pinned build tools, then this package built against that torch (--no-build-isolation).

VENV ?= .venv
PYTHON := $(VENV)/bin/python
BUILD_TOOLS := scikit-build-core==1.1.2 swig==4.5.1 cmake==4.4.5 ninja==1.13.2
PLUGIN_SOURCES := CMakeLists.txt pyproject.toml $(shell find plugin -type f)

.PHONY: test demo lint

$(PYTHON):
	python3 -m venv $(VENV)

$(VENV)/.installed: $(PYTHON) $(PLUGIN_SOURCES)
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install $(BUILD_TOOLS) openmm==8.6.1
	$(PYTHON) -m pip install --no-build-isolation -e ".[test,reference]"
	touch $@

lint: $(VENV)/.installed
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check --extend-exclude "*.md" .

test: lint
	$(PYTHON) -m pytest

# Samples alanine dipeptide with the bundled model; the last line printed names the plot.
demo: $(VENV)/.installed
	$(PYTHON) examples/alanine_dipeptide.py
