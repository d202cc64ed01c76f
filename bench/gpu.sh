#!/usr/bin/env bash
# One H200, one prepared run (< 8 min): bf16 reward-model training of a ~1B decoder at 1,024 tokens.
#   1. bench/gpu_rm.py under `accelerate launch`: TinyLlama-1.1B-shaped Llama from config, 8 pairs per
#      step, BT and APLOT × plain and shared-prompt forward: tokens/s, peak memory, MFU against the
#      bf16 matmul rate measured on the same card.
#   2. bench/gpu_rm.py --e2e: the real trainer (engine.rm.train, launched with the run service's argv as
#      `aplot run` does) on a 1.09B `tiny` Llama for 6 APLOT steps; its logged tokens/s.
#   3. bench/gpu_sharded.py: FSDP v2 and DeepSpeed ZeRO-2 through accelerate config files, each run,
#      stopped after a checkpoint and resumed to completion (ZeRO-2 needs the deepspeed package carried;
#      without it the step says "skipped"). SHARDED=0 skips it.
# Results land in $OUT: env.txt, gpu_rm.log, gpu_rm.json, e2e.log, e2e.json, e2e_metrics.jsonl,
# e2e_manifest.toml, sharded.json, sharded.log.
#
# The device image has torch/transformers/accelerate/scipy but not POT or tomli-w. Carry them as
# wheels (from the repo root, here, once):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pot==0.9.7 tomli-w==1.2.0
# then: run(command="bash bench/gpu.sh", carry=[".whl"], timeout_s=560).
# GPU_RM_EXTRA / E2E_EXTRA append arguments (a CPU smoke test: tiny shapes, --mixed-precision no).
# Without them step 1 still runs BT (a stub stands in for tomli-w, which it never calls) and step 2 is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c "import ot, tomli_w" 2>/dev/null || E2E=0  # the trainer needs both
if ! $PY -c "import tomli_w" 2>/dev/null; then
  mkdir -p /tmp/shim
  printf 'def dumps(*a, **k):\n    raise RuntimeError("tomli-w is not installed (bench/gpu.sh stub)")\n\n\ndump = dumps\n' \
    > /tmp/shim/tomli_w.py
  export PYTHONPATH=/tmp/shim${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY - <<'EOF'
import importlib
for m in ("torch", "transformers", "accelerate", "peft", "ot", "tomli_w", "scipy", "numpy"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "?"))
    except ImportError as e:
        print(m, "MISSING", e)
EOF
} 2>&1 | tee "$OUT/env.txt"

echo "== 1. step benchmark" | tee "$OUT/gpu_rm.log"
timeout 240 $PY -m accelerate.commands.launch --num_machines 1 --num_processes 1 --dynamo_backend no \
  --mixed_precision bf16 bench/gpu_rm.py --out "$OUT" --steps 8 --warmup 2 --pairs 8 --max-length 1024 \
  ${GPU_RM_EXTRA:-} 2>&1 | tee -a "$OUT/gpu_rm.log"
echo "exit ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_rm.log"

if [ "${E2E:-1}" = "1" ]; then
  echo "== 2. the real trainer" | tee -a "$OUT/gpu_rm.log"
  timeout 200 $PY bench/gpu_rm.py --e2e /tmp/aplot-e2e --out "$OUT" --pairs 8 --max-length 1024 \
    --mixed-precision bf16 --e2e-steps 6 ${E2E_EXTRA:-} 2>&1 | tail -n 5 | tee -a "$OUT/gpu_rm.log"
  tail -n 30 "$OUT/e2e.log" 2>/dev/null
else
  echo "== 2. skipped: tomli-w (and POT) not carried; see the header of bench/gpu.sh" | tee -a "$OUT/gpu_rm.log"
fi
if [ "${E2E:-1}" = "1" ] && [ "${SHARDED:-1}" = "1" ]; then
  echo "== 3. FSDP v2 and DeepSpeed ZeRO-2 from accelerate config files: run, stop, resume" | tee -a "$OUT/gpu_rm.log"
  timeout 330 $PY bench/gpu_sharded.py --out "$OUT" 2>&1 | tee "$OUT/sharded.log" | tail -n 4 | tee -a "$OUT/gpu_rm.log"
fi
nvidia-smi --query-gpu=memory.used,temperature.gpu --format=csv | tee -a "$OUT/env.txt"
