# The two commands: `make train` and `make test`. Each creates .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: train test lint bench clean

$(STAMP): setup.cfg pyproject.toml requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "mxlstm needs Python 3.11, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/mxlstm train --task digits --out runs/digits-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m mxlstm.bench setup-torch
	$(BIN)/python -m mxlstm.bench all --pairs 5 --no-static-shape --out docs/benchmarks.md

clean:
	rm -rf $(VENV) runs .pytest_cache
