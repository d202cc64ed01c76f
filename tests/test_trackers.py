"""`[log] trackers` exercised: what TensorBoard and MLflow hold is what metrics.jsonl holds."""

import math
import os

import pytest
from _cli import aplot

from engine import metrics as M
from engine.runs import store as mf


def scalars(paths: mf.RunPaths) -> dict[str, dict[int, float]]:
    """metrics.jsonl as tracker keys: `split/name` -> {step: value}, numbers only (as RunContext.log sends)."""
    out: dict[str, dict[int, float]] = {}
    for rec in M.read_all(paths.metrics):
        for k, v in rec.data.items():
            if isinstance(v, (int, float)):
                out.setdefault(f"{rec.split}/{k}", {})[rec.step] = float(v)
    return out


def same(a: float, b: float, rel: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from conftest import TINY_RM

    d = tmp_path_factory.mktemp("trackers")
    cfg = d / "tiny.toml"
    cfg.write_text(TINY_RM)
    runs = d / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = aplot("run", cfg, 'log.trackers=["tensorboard","mlflow"]', "-q", runs_dir=runs, env=env)
    assert proc.returncode == 0, proc.stderr
    (paths, _), = mf.list_runs(runs)
    return paths


def test_tensorboard_holds_the_metrics_stream(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    want = scalars(tracked_run)
    (logdir,) = (tracked_run.dir / "trackers").glob("*-rm-*")
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    got = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    assert set(got) == set(want)
    for tag, series in want.items():
        assert set(got[tag]) == set(series), tag
        assert all(same(got[tag][s], v, 1e-6) for s, v in series.items()), tag  # TensorBoard keeps float32


def test_mlflow_holds_the_metrics_stream(tracked_run):
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = MlflowClient(tracking_uri=(tracked_run.dir / "trackers" / "mlruns").as_uri())
    (exp,) = [e for e in client.search_experiments() if e.name == tracked_run.id]
    (run,) = client.search_runs([exp.experiment_id])
    want = scalars(tracked_run)
    assert set(run.data.metrics) == set(want)
    for key, series in want.items():
        got = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert set(got) == set(series), key
        assert all(same(got[s], v, 1e-12) for s, v in series.items()), key
    assert run.data.params["optim.lr"] == "0.001"


def test_wandb_offline(tmp_path, tiny_config, runs_dir):
    pytest.importorskip("wandb")
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    proc = aplot("run", tiny_config, 'log.trackers=["wandb"]', "-q", runs_dir=runs_dir, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.rglob("*.wandb"))
