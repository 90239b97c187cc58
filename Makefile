# Two entry points that work on a fresh machine (Python 3.10+, no torch installed):
#   make demo   gocopt's main job on the shipped reference model
#   make test   the test suite
#   make docs   the documentation site (docs-serve: served locally)
# On a machine with a CUDA build of torch already installed, keep it instead of the CPU wheel:
#   make test TORCH= VENV_ARGS=--system-site-packages
PYTHON ?= python3
VENV ?= .venv
VENV_ARGS ?=
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

$(BIN)/gocopt: pyproject.toml
	$(PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(TORCH),$(BIN)/pip install -q $(TORCH))  # the CPU wheel first: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/gocopt

demo: $(BIN)/gocopt
	$(BIN)/gocopt -v compile --model reference --budget 0.5 --steps 20 --out demo/reference_ddim20_b0.50.json

test: $(BIN)/gocopt
	$(BIN)/python -m pytest -n auto --dist loadfile  # a worker per core, each file on one worker

lint: $(BIN)/gocopt
	$(BIN)/ruff check .
	$(BIN)/mypy

# the documentation site (MkDocs, strict: a warning or a broken link fails the build) into site/
docs: $(BIN)/gocopt
	$(BIN)/mkdocs build --strict

docs-serve: $(BIN)/gocopt
	$(BIN)/mkdocs serve

.PHONY: install demo test lint docs docs-serve
