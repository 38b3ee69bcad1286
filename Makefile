# The two commands of the README:
#   make quickstart   set up, then train a GCN on Cora through Spark local mode
#   make test         set up, then lint, type-check and run the test suite (what CI runs)
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
# The Planetoid raw files: $LOTAN_DATA_DIR, else ../shared/datasets when it exists, else
# lotan downloads them into ~/.cache/lotan.
DATA_DIR ?= $(or $(LOTAN_DATA_DIR),$(wildcard $(abspath ..)/shared/datasets))
export LOTAN_DATA_DIR := $(DATA_DIR)
# The GraphFrames jar the real-GraphFrame test and the ladder's GraphFrames row load:
# $LOTAN_GRAPHFRAMES_JAR, else the one in ../shared/jars when it exists (users get it from
# Maven; without it those two say why they did not run).
GRAPHFRAMES_JAR ?= $(or $(LOTAN_GRAPHFRAMES_JAR),$(wildcard $(abspath ..)/shared/jars/graphframes-*-spark4_2.13.jar))
export LOTAN_GRAPHFRAMES_JAR := $(GRAPHFRAMES_JAR)

.PHONY: setup quickstart test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps ogb==1.3.6  # see pyproject.toml's test extras
	touch $@

quickstart: setup
	$(PY) -m lotan.quickstart

lint: setup
	$(PY) -m ruff check lotan tests bench
	$(PY) -m ruff format --check lotan tests bench
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

# The benchmark report (bench/results/quick/); the DGL baseline gets its own environment.
bench: setup
	$(PY) -m bench run --suite quick
