# The two commands of the README:  make demo  and  make test.
# Both create .venv when missing and install torch==2.13.0 FIRST: a looser torch
# requirement would pull a multi-gigabyte CUDA build. Both are idempotent.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
RUNS   ?= runs/demo
PYTEST_ARGS ?=
# This project's machines cannot download CIFAR; they keep a copy beside the repo.
export CLASSBENCH_DATA ?= $(abspath $(wildcard ../shared/datasets))

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Train the demo (ResNet-20 on CIFAR-10, a few CPU minutes) and compare the runs.
demo: $(STAMP)
	$(VENV)/bin/classbench train configs/cifar10/resnet20.yaml train.runs_dir=$(RUNS)
	$(VENV)/bin/classbench summary $(RUNS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
