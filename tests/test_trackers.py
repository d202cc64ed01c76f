"""`[log] trackers` exercised: what TensorBoard, MLflow and trackio hold is what metrics.jsonl holds,
under the project and run name that `[log]` gives; W&B offline writes its run."""

import json
import math
import os
import subprocess
import sys

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


PROJECT, RUN_NAME = "rm-study", "tiny-first"


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("trackio")
    from conftest import TINY_RM

    d = tmp_path_factory.mktemp("trackers")
    cfg = d / "tiny.toml"
    cfg.write_text(TINY_RM)
    runs = d / "runs"
    # offline and local only: no hub, no server; trackio's store defaults into the run folder
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRACKIO_"))} | {"HF_HUB_OFFLINE": "1"}
    proc = aplot("run", cfg, 'log.trackers=["tensorboard","mlflow","trackio"]', f"log.project={PROJECT}",
                 f"log.run_name={RUN_NAME}", "-q", runs_dir=runs, env=env)
    assert proc.returncode == 0, proc.stderr
    (paths, _), = mf.list_runs(runs)
    return paths


def test_tensorboard_holds_the_metrics_stream(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    want = scalars(tracked_run)
    logdir = tracked_run.dir / "trackers" / PROJECT  # TensorBoard's project is its folder
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
    (exp,) = [e for e in client.search_experiments() if e.name == PROJECT]
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == RUN_NAME
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


def test_trackio_holds_the_metrics_stream_locally(tracked_run):
    store = tracked_run.dir / "trackers" / "trackio"
    assert store.is_dir()
    # trackio reads its folder when imported: a fresh interpreter pointed at the run's store
    code = ("import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
            f"print(json.dumps({{'runs': S.get_runs({PROJECT!r}), 'logs': S.get_logs({PROJECT!r}, {RUN_NAME!r})}}, "
            "default=str))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ | {"TRACKIO_DIR": str(store), "HF_HUB_OFFLINE": "1"})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["runs"] == [RUN_NAME]
    series: dict[str, dict[int, float]] = {}
    for row in got["logs"]:
        for k, v in row.items():
            if isinstance(v, (int, float)) and k not in ("step", "timestamp"):
                series.setdefault(k, {})[row["step"]] = float(v)
    want = scalars(tracked_run)
    assert set(series) == set(want)
    for key, values in want.items():
        assert set(series[key]) == set(values), key
        assert all(same(series[key][s], v, 1e-12) for s, v in values.items()), key


def test_tracker_fields_reach_each_tracker_where_it_has_them():
    from engine.trackers import init_args

    project, kwargs = init_args(["wandb", "trackio", "mlflow", "tensorboard"], "study", "my-team", "first", "RUNID")
    assert project == "study"
    assert kwargs == {"wandb": {"name": "first", "entity": "my-team"}, "trackio": {"name": "first"},
                      "mlflow": {"run_name": "first"}}  # TensorBoard has no run name or entity: its folder is the project
    assert init_args(["wandb"], "", "", "", "RUNID") == ("RUNID", {"wandb": {"name": "RUNID"}})
