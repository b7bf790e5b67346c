PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

# One-time set-up: a virtual environment with the package and its test extra.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job: train the small Swin on the embedded digits data, then evaluate and export it.
demo: $(STAMP)
	$(VENV)/bin/keras-swin train

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q tests

test-fast: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) build *.egg-info
