# Two entry points that work on a fresh machine (Python 3.10+, no torch installed):
#   make demo   gocopt's main job on the shipped reference model
#   make test   the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/gocopt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0  # the CPU wheel first: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/gocopt

demo: $(BIN)/gocopt
	$(BIN)/gocopt -v compile --model reference --budget 0.5 --steps 20 --out demo/reference_ddim20_b0.50.json

test: $(BIN)/gocopt
	$(BIN)/python -m pytest

.PHONY: install demo test
