# Two commands do everything on a fresh clone:  `make repro` (the pipeline)  and  `make test` (the tests).
SHELL := /bin/bash
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export TOKENIZERS_PARALLELISM ?= false
VENV := . .venv/bin/activate &&

.PHONY: setup repro test lint mlflow-ui

setup:
	@bash scripts/setup.sh

repro: setup  ## run the whole DVC pipeline on the default model
	$(VENV) dvc repro $(ARGS)
	@$(VENV) cat reports/summary.md

test: setup  ## the test suite (includes a short end-to-end run on the real default model)
	$(VENV) python -m pytest $(ARGS)

lint: setup
	$(VENV) ruff check . && ruff format --check .

mlflow-ui: setup  ## browse runs at http://127.0.0.1:5000
	$(VENV) mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(CURDIR)/mlflow.db
