# Two commands on a fresh machine: `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Quieten TensorFlow's C++ start-up banner in every target.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

test:
	$(PY) -m pytest -q tests
