# kotune: `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dvc.yaml runs `python stages/…`: that python must be the project's
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-fast lint format params setup clean-venv

run: $(STAMP)
	dvc repro

test: $(STAMP)
	python -m pytest -q

# the unit and contract tests only (seconds), without the end-to-end pipeline runs
test-fast: $(STAMP)
	python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# regenerate params.yaml from conf/ exactly as `dvc exp run` does
params: $(STAMP)
	$(BIN)/python -m kotune.config compose --out params.yaml

setup: $(STAMP)

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
