# Two commands on a fresh machine: `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Quieten TensorFlow's C++ start-up banner in every target.
export TF_CPP_MIN_LOG_LEVEL ?= 2

QUICKSTART_RUN := runs/quickstart
HELDOUT := data/synthetic/heldout.txt
QUICKSTART_TRAIN := data/synthetic/train.txt
# `make evaluate` evaluates the quickstart run on held-out synthetic rows by default;
# `make evaluate MODEL=RUN/model.keras DATA=FILE` evaluates anything else.
MODEL ?= $(QUICKSTART_RUN)/model.keras
DATA ?= $(HELDOUT)
# Extra train.py flags for the quickstart, e.g. QUICKSTART_FLAGS=--overwrite to retrain.
QUICKSTART_FLAGS ?=

.PHONY: install test quickstart evaluate bench

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

# Two workers (pytest-xdist), each taking whole test files: module fixtures are built once.
test:
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests

# Trains, then evaluates on the held-out rows beside the built-in k-mer ridge baseline
# fitted on the same training file (about a minute of CPU more).
quickstart:
	$(PY) train.py --flagfile=flags/quickstart.flags $(QUICKSTART_FLAGS)
	$(MAKE) $(HELDOUT)
	$(PY) evaluate.py --model=$(QUICKSTART_RUN)/model.keras --data=$(HELDOUT) \
		--baseline_train_data=$(QUICKSTART_TRAIN)

$(HELDOUT):
	$(VENV)/bin/dream-synthetic --output=$@ --rows=5000 --seed=1

evaluate: $(if $(filter $(HELDOUT),$(DATA)),$(HELDOUT))
	$(PY) evaluate.py --model=$(MODEL) --data=$(DATA)

# Benchmarks (several minutes on 2 cores; benchmarks/README.md): writes
# benchmarks/results.json and results.md.
bench:
	$(PY) benchmarks/run_all.py
