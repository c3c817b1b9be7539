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

.PHONY: setup demo test docs-results clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The demo: what classbench is for, a comparison. A CNN against a tiny transformer under one
# recipe (the ResNet-20 config cut to 2 epochs of 10,000 CIFAR-10 images, val scored each epoch,
# test once at the end: about 3 minutes on 2 AVX2 cores), one run each, swept (a finished run
# is kept, an interrupted one resumed), then the summary table and the significance verdict
# (McNemar's test on the same 10,000 test images). DEMO_SET adds key=value for every run.
DEMO_MODELS ?= resnet20,mcvit_tiny
DEMO_SET    ?= train.epochs=2 eval.splits=[val]
demo: $(STAMP)
	$(VENV)/bin/classbench sweep configs/cifar10/resnet20.yaml --name demo --runs-dir $(RUNS) \
	    --set model.name=$(DEMO_MODELS) $(DEMO_SET)
	$(VENV)/bin/classbench compare $(RUNS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Rebuild every generated table and figure in docs/ from the run records in results/ (each block names its
# command; docs/results.md says how to add one). DOCS_RESULTS_ARGS=--check changes nothing and fails on a stale block.
DOCS_RESULTS_ARGS ?=
docs-results: $(STAMP)
	$(PY) -m classbench.drivers.docs_results $(DOCS_RESULTS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
