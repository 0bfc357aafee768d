# The two commands of the README: `make demo` (main job) and `make test` (the suite).
# Each one creates .venv and installs everything it needs, torch pinned to the CPU build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast fuzz lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[torch,data,dev,gpu,tune]'
	touch $(STAMP)

install: $(STAMP)

# The main job: train the digits MLP (ternary QAT + fp32 baseline), freeze, report.
demo: $(STAMP)
	$(VENV)/bin/tritium train examples/mlp.tri --out runs/mlp

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -n 2

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

# The long fuzzing run (20,000+ cases per target); CI runs a shorter one.
fuzz: $(STAMP)
	TRITIUM_FUZZ_EXAMPLES=20000 $(PY) -m pytest -q tests/property -k fuzz

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/frontend.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
