# Two commands for a fresh machine:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-dev serve test lint bench demo-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null

# Installed once, then again only when pyproject.toml changes: `make serve` starts at once
# after the first run (delete $(VENV)/.installed* to force a reinstall). A fresh clone has no
# stamp, so CI installs everything.
# torch is pinned first so pip takes the CPU build on disk, not a multi-GB CUDA download;
# pyproject keeps `torch>=2.4` so GPU users keep their own build.
STAMP     := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e .
	touch $@

# The dev install includes the runtime one, so it stamps both.
$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[dev]"
	bash scripts/install-browser.sh
	touch $@ $(STAMP)

install: $(STAMP)

install-dev: $(STAMP_DEV)

serve: install
	$(BIN)/gpt-service serve --host $(HOST) --port $(PORT)

test: install-dev
	bash scripts/install-postgres.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadfile

bench: install-dev
	$(BIN)/python -m bench.run

demo-model: install-dev
	$(BIN)/python scripts/build_demo_model.py
