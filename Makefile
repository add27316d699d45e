# kotune: `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the page template `dvc plots show` fills (.dvc/config): Vega inlined, so plots draw offline
PLOTPAGE := .dvc/plots/offline.html
# dvc.yaml runs `exec python stages/…`: that python must be the project's
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run exp test test-fast lint format params setup clean-venv

# params.yaml is checked whole first: a key no stage reads (a typo) is reported, not ignored
run: $(STAMP) $(PLOTPAGE)
	python -m kotune.config check params.yaml
	dvc repro

# `dvc exp run ARGS`, its -S overrides checked first (one line for an unknown key or option,
# where DVC prints "unexpected error" and Hydra's message); Ctrl-C ends make with status 130.
#   make exp ARGS='-S train.lr=5e-4 -S train.lora.r=16'
exp: $(STAMP)
	python -m kotune.overrides $(ARGS)
	dvc exp run $(ARGS)

test: $(STAMP) $(PLOTPAGE)
	python -m pytest -q

# the unit and contract tests only (seconds), without the end-to-end pipeline runs
test-fast: $(STAMP) $(PLOTPAGE)
	python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# regenerate params.yaml from conf/ exactly as `dvc exp run` does
params: $(STAMP)
	$(BIN)/python -m kotune.config compose --out params.yaml

setup: $(STAMP) $(PLOTPAGE)

# Vega, Vega-Lite and vega-embed from their npm tarballs (npm pack, pinned hashes), once
$(PLOTPAGE): src/kotune/plotpage.py | $(STAMP)
	$(BIN)/python -m kotune.plotpage --out $@ && touch $@

# torch first and pinned (2.13.0: the local CPU wheel here, the CUDA wheel elsewhere), so the
# ranges in pyproject.toml are already satisfied and pip pulls no second torch.
$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -r requirements.lock -e ".[dev]"
	$(BIN)/python -c "import kotune, torch, transformers, peft, bitsandbytes, dvc, kiwipiepy, fastapi, uvicorn"
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
