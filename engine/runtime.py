"""What every training entry point shares: the run's life cycle on disk, seen from inside the subprocess.

An entry point (`engine.rm.train`, `engine.rl.train`) is started by the run service (`engine.runs.lifecycle`) as
`accelerate launch [flags] -m engine.<kind> --run-dir runs/<id> [--resume]`, and wraps its
training in `with run_process() as ctx:`. `RunContext` then owns, for that function:

- the Accelerator built from `[launch]`/`[optim]`/`[log]` (DDP, FSDP or DeepSpeed come from
  `accelerate launch` and its config file — there is no home-made distribution layer here);
- the one main-process gate: only rank 0 writes the manifest and the metrics stream;
- the status life cycle: `running` at start, then `completed` | `stopped` | `failed` with
  `exit_code` and a one-line `error`;
- stop requests: SIGINT/SIGTERM set a flag that all ranks agree on at the next step boundary,
  so a stop ends with a resumable checkpoint instead of a torn one;
- checkpoints: `checkpoints/step-N` via `accelerator.save_state` (safetensors weights,
  optimizer, scheduler, RNG) plus `trainer_state.json`, a `done` marker written last, rotation
  to `[checkpoint] keep`, and exact resume from the newest complete one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine import STOP_AT_START_ENV, STOP_SIGNALS
from engine import config as config_mod
from engine import metrics as M
from engine.errors import EXIT_FAILED, EXIT_INTERRUPTED, AplotError
from engine.metrics import MetricsWriter, parse_line
from engine.runs import launch as launch_mod
from engine.runs import liveness
from engine.runs import status as S
from engine.runs import store as mf

TRAINER_STATE = "trainer_state.json"
DONE = "done"


class TrainingError(AplotError):
    """A failure with a one-line message meant for the user (no traceback in the manifest)."""

    exit_code = EXIT_FAILED


class StopDuringEval(Exception):  # noqa: N818 — a signal to the trainer, not an error
    """A stop arrived in the middle of an eval. The eval is dropped unlogged, the trainer checkpoints
    the step it had finished, and the resumed run scores that eval first: a stop never waits on a long
    eval (past the stop's grace it would be killed and lose every step since the last checkpoint)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="aplot training entry point (started by `aplot run`).")
    p.add_argument("--run-dir", required=True, type=Path, help="the run folder holding manifest.toml")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    return p.parse_args(argv)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,  # noqa: S607 - git from PATH for provenance only; a missing git is handled
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class RunContext:
    def __init__(self, run_dir: Path, resume: bool = False):
        self._stop_flag = self._signalled = False
        # Stop handlers first: whatever the launching process ignored, a stop from here on is heard;
        # one held since the rank's first line (engine/__init__) is delivered to them now.
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        if os.environ.pop(STOP_AT_START_ENV, None) == "1":  # the launcher was stopped before this rank existed
            self._stop_flag = True
            print("[aplot] stopped while starting: stopping after the first step (a checkpoint is saved first)",
                  flush=True)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        gc.freeze()  # what the imports built lives as long as the rank: never collect it (engine/__init__)
        gc.enable()
        self.paths = mf.RunPaths(Path(run_dir))
        self._alive = liveness.hold(self.paths.dir)  # held until this process exits, however it exits
        self.manifest = mf.read(self.paths)
        self.cfg = config_mod.from_dict(self.manifest["config"], str(self.paths.manifest))
        self.resume = resume
        self.last_step: int | None = None  # of the newest metrics record: where train.log says the run ended
        self.outcome: tuple[str, dict] | None = None  # (status, summary), set by the entry point's body
        self._writer: MetricsWriter | None = None
        self._lean_hook = None  # the pre-save hook that leaves a LoRA base out of step checkpoints
        self.accelerator = self._make_accelerator()
        self._heartbeat = liveness.Heartbeat(self.paths.dir).start() if self.is_main else None

    # ------------------------------------------------------------------ set-up

    def _make_accelerator(self):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        cfg = self.cfg
        trackers = list(cfg.log.trackers) or None
        accelerator = Accelerator(
            cpu=cfg.launch.cpu,
            step_scheduler_with_optimizer=False,  # total steps already count every rank; step once
            mixed_precision=cfg.launch.mixed_precision,
            gradient_accumulation_steps=cfg.optim.grad_accum,
            log_with=trackers,
            project_config=ProjectConfiguration(project_dir=str(self.paths.dir),
                                                logging_dir=str(self.paths.dir / "trackers")),
        )
        if accelerator.device.type == "cpu":
            local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
            torch.set_num_threads(cfg.launch.threads or launch_mod.default_threads(local))
            if cfg.launch.mixed_precision == "bf16" and (why := launch_mod.slow_bf16()):
                accelerator.print(f"[aplot] warning: {why}", flush=True)
        set_seed(cfg.seed, device_specific=False)
        if trackers:
            from engine import trackers as tracking

            local = tracking.local_dirs(trackers, self.paths.dir / "trackers")
            if "MLFLOW_TRACKING_URI" in os.environ:  # the user's MLflow server, not the run folder's store
                local = {k: v for k, v in local.items() if not k.startswith("MLFLOW_")}
            for key, value in local.items():
                os.environ.setdefault(key, value)
            project, init_kwargs = tracking.init_args(trackers, cfg.log.project, cfg.log.entity, cfg.log.run_name,
                                                      self.paths.id)
            accelerator.init_trackers(project, config=_flatten(config_mod.to_dict(cfg)), init_kwargs=init_kwargs)
        return accelerator

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _on_signal(self, signum, _frame) -> None:
        # A second SIGINT means "now". SIGTERM never escalates: the multi-process launcher forwards
        # SIGTERM to its ranks right after the group's SIGINT, and that must not tear the checkpoint.
        if self._signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._signalled = self._stop_flag = True
        print(f"[aplot] received {signal.Signals(signum).name}: stopping at the next step boundary "
              "(a checkpoint is saved first)", flush=True)

    @property
    def stop_requested(self) -> bool:
        """True on every rank once any rank was signalled (one tiny all-reduce per call)."""
        if self.accelerator.num_processes == 1:
            return self._stop_flag
        import torch

        flag = torch.tensor([1.0 if self._stop_flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def stop_between_eval_batches(self) -> None:
        """Raise StopDuringEval in a training run that was asked to stop (every rank at the same batch:
        the check is a collective); an eval run (`kind = "eval"`) scores to the end."""
        if self.cfg.kind != "eval" and self.stop_requested:
            raise StopDuringEval

    def nonfinite(self, loss, step: int, optimizer) -> bool:
        """False when `loss` is finite on every rank. Otherwise fail the run (TrainingError), or with
        `optim.skip_nonfinite` drop this optimizer step's gradients and return True: every rank
        agrees, so DDP never waits on a rank that skipped."""
        import torch

        finite = torch.isfinite(loss.detach()).float()
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.reduce(finite, reduction="mean")
        if finite.item() == 1.0:
            return False
        if not self.cfg.optim.skip_nonfinite:
            raise TrainingError(f"non-finite loss at step {step}; optim.skip_nonfinite = true skips such batches")
        optimizer.zero_grad(set_to_none=True)
        self.accelerator.step = 0  # realign gradient accumulation with the next optimizer step
        self.accelerator.print(f"[aplot] step {step}: non-finite loss, batch skipped")
        return True

    def check_launch(self) -> None:
        """Fail before training when the launch gave another topology than the config asked for (an
        accelerate config file Accelerate read differently, a launcher that ignored a flag)."""
        acc = self.accelerator
        want = launch_mod.expected(self.cfg, launch_mod.run_accelerate_file(self.cfg, self.paths.dir))
        got = {"world_size": acc.num_processes, "distributed_type": str(acc.distributed_type).split(".")[-1],
               "mixed_precision": str(acc.mixed_precision)}
        wrong = [f"{k} {want[k]!r} asked, {got[k]!r} given" for k in want if want[k] != got[k]]
        if wrong:
            raise TrainingError("launch: " + "; ".join(wrong) + " — check [launch] and launch.accelerate_config")

    def _resume_checkpoint(self) -> Path | None:
        """The checkpoint a resume loads: the newest complete one (None when not resuming)."""
        if not self.resume:
            return None
        steps = mf.checkpoint_steps(self.paths)
        if not steps:
            raise TrainingError(f"{self.paths.id}: no complete checkpoint to resume from")
        return self.paths.checkpoints / f"step-{steps[-1]}"

    def saved_state(self) -> dict[str, Any] | None:
        """The trainer state of the checkpoint a resume will load (read before anything is built), or None."""
        ckpt = self._resume_checkpoint()
        return None if ckpt is None else json.loads((ckpt / TRAINER_STATE).read_text())

    def start(self, resolved: dict, data_hashes: dict | None = None) -> None:
        """Mark the run running and freeze the derived values and provenance into the manifest."""
        if not self.is_main:
            return
        import accelerate
        import torch
        import transformers

        provenance = {
            "aplot_version": _aplot_version(),
            "git_commit": _git_commit() or "",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
            "device": str(self.accelerator.device),
            "device_name": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()
                            or platform.machine()),
            "distributed_type": str(self.accelerator.distributed_type).split(".")[-1],
            "world_size": self.accelerator.num_processes,
            "mixed_precision": self.accelerator.mixed_precision,
            "hostname": platform.node(),
            "data_sha256": dict(data_hashes or {}),
        }
        changes: dict[str, Any] = {"status": S.RUNNING, "pid": _launcher_pid(), "host": liveness.this_host(),
                                   "resolved": resolved,
                                   "provenance": provenance, "error": "", "exit_code": -1,
                                   "started_at": mf.now_iso()}
        mf.update(self.paths, **changes)
        print("[aplot] resolved: " + json.dumps(resolved, sort_keys=True), flush=True)

    # ------------------------------------------------------------------ metrics

    def log(self, step: int, split: str, data: dict[str, Any]) -> None:
        if not self.is_main:
            return
        if self._writer is None:
            self._writer = MetricsWriter(self.paths.metrics)
        self._writer.write(step, split, data)
        self.last_step = step
        if M.is_eval(split):
            print(M.eval_line(step, split, data), flush=True)
        if self.cfg.log.trackers:
            scalars = {f"{split}/{k}": v for k, v in data.items() if isinstance(v, (int, float))}
            self.accelerator.log(scalars, step=step)

    # ------------------------------------------------------------------ checkpoints

    def save(self, step: int, extra_state: dict[str, Any]) -> Path:
        """Save a resumable state as `checkpoints/step-N` (all ranks must call this)."""
        out = self.paths.checkpoints / f"step-{step}"
        state = json.dumps({"step": step, "world_size": self.accelerator.num_processes, **extra_state}, indent=1)
        if (out / DONE).exists():
            # A run resumed at its last step saves that step again. Its complete checkpoint may be the
            # only one left (keep = 1): never delete it to rewrite the same state, refresh only the
            # trainer state, atomically. (No optimizer step ran since it was loaded.)
            self.accelerator.wait_for_everyone()
            if self.is_main:
                mf.write_atomic(out / TRAINER_STATE, state)
            self.accelerator.wait_for_everyone()
            return out
        if self.is_main and out.exists():
            shutil.rmtree(out)
        self.accelerator.wait_for_everyone()
        try:
            if self._lean_hook is None and self._frozen_base_rebuilt():
                self._lean_hook = self.accelerator.register_save_state_pre_hook(_drop_frozen_weights)
            self.accelerator.save_state(str(out), safe_serialization=True)
            # The weights on disk before `done` can be: otherwise a power cut may keep the marker and lose
            # what it vouches for. Every rank syncs (on one host the later passes find nothing left to
            # write; across hosts each flushes its own shards), then the main process marks it. The walk
            # starts once every rank has written: a rank done early (its RNG state only) found rank 0's
            # temp file listed and renamed away before it could open it.
            self.accelerator.wait_for_everyone()
            sync_tree(out)
            self.accelerator.wait_for_everyone()
            if self.is_main:
                mf.write_atomic(out / TRAINER_STATE, state)
                mf.write_atomic(out / DONE, mf.now_iso() + "\n")  # written last: marks the checkpoint complete
                fsync_path(out.parent)  # step-N's own name, before rotation deletes the older ones
        except (OSError, RuntimeError) as e:  # torch reports a full disk as RuntimeError("unexpected pos …")
            kept = mf.checkpoint_steps(self.paths)
            raise TrainingError(f"checkpoint step-{step} could not be written: {one_line(e)}; "
                                + (f"step-{kept[-1]} is intact" if kept else "no earlier checkpoint")) from e
        if self.is_main:
            self._rotate()
            mf.update(self.paths, summary={"last_checkpoint": f"{mf.CHECKPOINTS}/step-{step}",
                                           "last_checkpoint_step": step})
        self.accelerator.wait_for_everyone()
        return out

    def _rotate(self) -> None:
        steps = mf.checkpoint_steps(self.paths)
        for old in steps[: max(0, len(steps) - self.cfg.checkpoint.keep)]:
            shutil.rmtree(self.paths.checkpoints / f"step-{old}", ignore_errors=True)
        for d in self.paths.checkpoints.glob("step-*"):  # torn saves left by a kill
            if not (d / DONE).exists() and d.name not in {f"step-{s}" for s in steps}:
                shutil.rmtree(d, ignore_errors=True)

    def resume_state(self) -> dict[str, Any] | None:
        """Load the newest complete checkpoint into the prepared objects; its trainer state, or None."""
        ckpt = self._resume_checkpoint()
        if ckpt is None:
            return None
        # a LoRA checkpoint holds the trainable weights; the frozen base is the one just rebuilt
        self.accelerator.load_state(str(ckpt), **({"strict": False} if self._frozen_base_rebuilt() else {}))
        state = json.loads((ckpt / TRAINER_STATE).read_text())
        if self.is_main:
            self._supersede_metrics_after(state["step"])
            print(f"[aplot] resumed from {ckpt.name}: continuing at step {state['step'] + 1}", flush=True)
        return state

    def _supersede_metrics_after(self, step: int) -> None:
        """Lines the killed attempt wrote past the checkpoint move to metrics.superseded.jsonl.

        The resumed run writes those steps again; keeping both in the stream would draw every curve
        twice. Nothing is deleted: the superseded lines stay readable beside the stream.
        """
        if not self.paths.metrics.exists():
            return
        keep, moved = [], []
        for line in self.paths.metrics.read_bytes().splitlines(keepends=True):
            rec = parse_line(line)
            if rec is None or rec.step <= step:
                (keep if rec is not None else moved).append(line)
            else:
                moved.append(line)
        if moved:
            with open(self.paths.dir / "metrics.superseded.jsonl", "ab") as fh:
                fh.writelines(m if m.endswith(b"\n") else m + b"\n" for m in moved)
                fh.flush()
                os.fsync(fh.fileno())  # on disk before the stream that held these lines is rewritten
            mf.write_atomic_bytes(self.paths.metrics, b"".join(keep))

    def export_model(self, model, tokenizer, name: str) -> Path:
        """An HF folder (safetensors + tokenizer, LoRA merged) under checkpoints/<name>, for PPO and eval.

        Written to a temp folder, synced and renamed, so a reader never finds half an export, even
        after a power cut.
        """
        from accelerate.utils import DistributedType

        from engine.models import save_reward_model, save_tokenizer

        out = self.paths.checkpoints / name
        m = self.cfg.model
        inputs = {"max_length": m.max_length, "prompt_share": m.prompt_share,
                  "rule": "prefix + prompt + middle + response + suffix; the prompt keeps its last tokens, at "
                          "least prompt_share x max_length; responses lose their end when they must"} \
            if self.cfg.kind == "rm" else None
        sharded = self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        state_dict = self.accelerator.get_state_dict(model) if sharded else None  # a collective: all ranks
        if self.is_main:
            tmp = out.with_name(f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            unwrapped = self.accelerator.unwrap_model(model)
            if sharded:
                unwrapped.hf_model.save_pretrained(str(tmp), safe_serialization=True, state_dict={
                    k.removeprefix("hf_model."): v for k, v in state_dict.items()})
                save_tokenizer(tokenizer, tmp, inputs)
            else:  # a RewardModel, or any wrapper exposing its HF model (the PPO policy's value head stays out)
                save_reward_model(getattr(unwrapped, "hf_model", unwrapped), tmp, tokenizer, inputs,
                                  adapter_base=self._adapter_base())
            sync_tree(tmp)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
            fsync_path(out.parent)
        self.accelerator.wait_for_everyone()
        return out

    def _frozen_base_rebuilt(self) -> bool:
        """Whether step checkpoints may leave out frozen weights: an RM's or a DPO policy's LoRA base,
        which every launch rebuilds identically from model.name (the seed, for `tiny`; a DPO run's
        fitted start from checkpoints/reference), on an unsharded run."""
        from accelerate.utils import DistributedType

        return (self.cfg.kind in ("rm", "dpo") and self.cfg.model.lora.r > 0
                and self.accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED))

    def _adapter_base(self) -> str:
        """Where an RM's LoRA base can be rebuilt from (its checkpoints then hold the adapter alone),
        or "" for a merged copy: full fine-tuning, the random `tiny` base, a dequantised GGUF."""
        m = self.cfg.model
        if self.cfg.kind != "rm" or m.lora.r == 0 or m.name == "tiny" or m.gguf_file:
            return ""
        return str(Path(m.name).resolve()) if Path(m.name).is_dir() else m.name

    # ------------------------------------------------------------------ end

    def finish(self, status: str, summary: dict[str, Any] | None = None, error: str = "") -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._writer is not None:
            try:
                self._writer.sync()
            except OSError as e:  # a full disk must not also cost the run its final status
                print(f"[aplot] metrics stream not flushed: {e}", file=sys.stderr, flush=True)
            finally:
                with contextlib.suppress(OSError):
                    self._writer.close()
        if self.cfg.log.trackers:
            self.accelerator.end_training()
        if not self.is_main:
            return
        mf.update(self.paths, status=status, exit_code=S.exit_code(status), error=error, finished_at=mf.now_iso(),
                  summary=_finite(summary or {}))
        print(M.end_line(status, self.last_step), flush=True)


def fsync_path(path: Path) -> None:
    """fsync a file (its data) or a folder (the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: Path) -> None:
    """Every file and folder under `root` on disk, deepest first and `root` last: a tree whose name a
    reader may then trust (a checkpoint about to be marked done, an export about to be renamed)."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def _drop_frozen_weights(models: list, weights: list[dict], output_dir: str) -> None:
    """Accelerate's pre-save hook: each model's saved state without its frozen parameters."""
    for model, state in zip(models, weights, strict=False):
        for name, p in model.named_parameters():
            if not p.requires_grad:
                state.pop(name, None)


def _aplot_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aplot")
    except PackageNotFoundError:
        return "0+local"


def _launcher_pid() -> int:
    """The pid the run service spawned (`accelerate launch`), whose process group holds every rank."""
    try:
        return os.getpgid(0)
    except OSError:
        return os.getpid()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)):
            out[f"{prefix}{k}"] = v
    return out


def _finite(d: dict) -> dict:
    return {k: (_finite(v) if isinstance(v, dict) else v) for k, v in d.items()
            if not (isinstance(v, float) and not math.isfinite(v))}


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, AplotError) else f"{type(exc).__name__}: {msg}"


@contextlib.contextmanager
def run_process(argv: list[str] | None = None) -> Iterator[RunContext]:
    """The run's RunContext for the body of `with`, which trains and sets `ctx.outcome = (status,
    summary)`; how the body ended is recorded, and the process exits 0 only when it completed.

    A context manager rather than a function that calls the trainer back: the entry point's own
    `main` reads top to bottom, and no call goes from the trainer back into a frame of this module."""
    args = parse_args(argv)
    try:
        ctx = RunContext(args.run_dir, resume=args.resume)
    except AplotError as e:
        for line in e.lines():
            print(f"aplot: {line}", file=sys.stderr)
        sys.exit(e.code)
    t0 = time.time()
    try:
        ctx.check_launch()
        yield ctx
    except KeyboardInterrupt:
        ctx.finish(S.STOPPED, error="interrupted before a checkpoint could be saved")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # recorded in one line; the full traceback goes to train.log
        traceback.print_exc()
        msg = one_line(exc)
        print(f"[aplot] failed: {msg}", file=sys.stderr, flush=True)
        try:
            ctx.finish(S.FAILED, error=msg)
        except Exception:  # the disk may be what failed; the log still has the story
            traceback.print_exc()
        sys.exit(EXIT_FAILED)
    if ctx.outcome is None:
        raise RuntimeError("the entry point's body ended without setting ctx.outcome")
    status, summary = ctx.outcome
    summary = dict(summary)
    summary["wall_s"] = round(time.time() - t0, 2)
    ctx.finish(status, summary)
    sys.exit(S.exit_code(status))
