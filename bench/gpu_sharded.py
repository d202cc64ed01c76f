"""FSDP (v2) and DeepSpeed ZeRO-2 through an accelerate config file, the way a user would, on one GPU.

Run by bench/gpu.sh (step 3). For each mode: an accelerate config file, `aplot run --detach` of a
small Llama reward model in bf16 with that file, `aplot stop` once a checkpoint exists, then
`aplot resume` to completion. It records, per mode, what the trainer got (distributed type, world size,
mixed precision: the trainer refuses to start when they differ from the file) and whether the stop
left a complete checkpoint that resumed to `completed`. Accelerate engages neither mode on CPU, so CI
never runs them; `--cpu-smoke` runs the same script with a 2-rank MULTI_CPU file instead, so the script
itself is checked here.

    python bench/gpu_sharded.py --out OUT [--modes fsdp2,zero2] [--cpu-smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FILES = {
    "fsdp2": {"distributed_type": "FSDP", "num_processes": 1, "mixed_precision": "bf16",
              "fsdp_config": {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                              "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
                              "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_reshard_after_forward": True,
                              "fsdp_offload_params": False, "fsdp_cpu_ram_efficient_loading": False}},
    "zero2": {"distributed_type": "DEEPSPEED", "num_processes": 1, "mixed_precision": "bf16",
              "deepspeed_config": {"zero_stage": 2, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
                                   "offload_optimizer_device": "none", "offload_param_device": "none",
                                   "zero3_init_flag": False}},
    "cpu-smoke": {"distributed_type": "MULTI_CPU", "num_processes": 2, "use_cpu": True, "mixed_precision": "no"},
}
BASE = {"compute_environment": "LOCAL_MACHINE", "machine_rank": 0, "num_machines": 1, "rdzv_backend": "static",
        "same_network": True, "main_training_function": "main", "debug": False}


def config_toml(hidden: int, layers: int, cpu: bool) -> str:
    return f"""
kind = "rm"
name = "sharded"
[model]
max_length = 256
[model.tiny]
hidden_size = {hidden}
num_layers = {layers}
num_heads = 8
vocab_size = 2048
[data]
train = "synthetic"
synthetic_pairs = 4000
[optim]
lr = 1e-4
batch_size = 8
max_steps = 40
[eval]
every = 20
[checkpoint]
every = 2
keep = 2
[launch]
cpu = {"true" if cpu else "false"}
"""


def aplot(store: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "APLOT_RUNS_DIR": str(store), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "aplot_tui.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_mode(mode: str, work: Path, hidden: int, layers: int) -> dict:
    out: dict = {"mode": mode}
    if mode == "zero2" and importlib.util.find_spec("deepspeed") is None:
        return out | {"result": "skipped: the deepspeed package is not installed"}
    work.mkdir(parents=True, exist_ok=True)
    store = work / "runs"
    acc_file = work / f"{mode}.yaml"
    acc_file.write_text(json.dumps(BASE | FILES[mode], indent=1))  # JSON is YAML too
    cfg = work / "rm.toml"
    cfg.write_text(config_toml(hidden, layers, cpu=mode == "cpu-smoke"))
    t0 = time.time()
    started = aplot(store, "run", str(cfg), f"launch.accelerate_config={acc_file}", "--detach")
    if started.returncode != 0:
        return out | {"result": "launch refused", "error": started.stderr.strip().splitlines()[-1:]}
    run_id = started.stdout.strip().splitlines()[-1]
    run_dir = store / run_id
    manifest = lambda: tomllib.loads((run_dir / "manifest.toml").read_text())  # noqa: E731
    deadline = time.time() + 300
    while time.time() < deadline and not list(run_dir.glob("checkpoints/step-*/done")):
        if manifest()["status"] in ("failed", "completed"):
            break
        time.sleep(0.5)
    m = manifest()
    out["provenance"] = {k: m.get("provenance", {}).get(k) for k in ("distributed_type", "world_size", "mixed_precision",
                                                                     "device_name")}
    if m["status"] == "failed":
        return out | {"result": "failed before a checkpoint", "error": m.get("error", "")}
    stopped = aplot(store, "stop", run_id, "--grace", "120")
    m = manifest()
    ckpts = sorted(int(p.parent.name.split("-")[1]) for p in run_dir.glob("checkpoints/step-*/done"))
    out["stop"] = {"status": m["status"], "exit_code": m.get("exit_code"), "checkpoints": ckpts,
                   "stdout": stopped.stdout.strip()}
    resumed = aplot(store, "resume", run_id, "-q")
    m = manifest()
    out["resume"] = {"status": m["status"], "error": m.get("error", ""), "returncode": resumed.returncode,
                     "final_step": m.get("summary", {}).get("step"),
                     "heldout_accuracy": m.get("summary", {}).get("eval/heldout/accuracy")}
    out["wall_s"] = round(time.time() - t0, 1)
    ok = out["stop"]["status"] == "stopped" and ckpts and m["status"] == "completed"
    out["result"] = "ok" if ok else "FAILED"
    if not ok:
        out["log_tail"] = (run_dir / "train.log").read_text()[-3000:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--modes", default="fsdp2,zero2")
    ap.add_argument("--work", type=Path, default=Path("/tmp/aplot-sharded"))  # noqa: S108 - the default work folder of a throwaway benchmark on a lent machine
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--cpu-smoke", action="store_true", help="a 2-rank MULTI_CPU file instead: checks this script")
    args = ap.parse_args()
    modes = ["cpu-smoke"] if args.cpu_smoke else args.modes.split(",")
    hidden, layers = (64, 1) if args.cpu_smoke else (args.hidden, args.layers)
    results = [one_mode(m, args.work / m, hidden, layers) for m in modes]
    for r in results:
        print(json.dumps(r), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sharded.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
