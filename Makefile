PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per set-up: the demo needs the package with its train and export extras only;
# the tests add the reference stack (torch, transformers, jax, keras-hub, ...).
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-demo demo test test-fast lint-imports bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[train,export]"
	touch $(DEMO_STAMP)

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(TEST_STAMP)

install-demo: $(DEMO_STAMP)

install: $(TEST_STAMP)

# The main job: train the small Swin on the embedded digits data, then evaluate and export it.
demo: $(DEMO_STAMP)
	$(VENV)/bin/keras-swin train --overwrite

# The import contract (pyproject.toml, [tool.importlinter]) first: the floors stay true.
lint-imports: $(TEST_STAMP)
	$(VENV)/bin/lint-imports

# Two pytest workers (pytest-xdist): most of the suite's time is one-core work (imports,
# subprocesses, small models), so both cores of a CI machine halve it. The 30 slowest tests
# are listed at the end: the suite should stay near 20 minutes on a 2-core CI machine.
test: lint-imports
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q -n 2 --durations=30 tests

test-fast: $(TEST_STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q -n 2 -m "not slow" tests

bench: $(TEST_STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) build *.egg-info
