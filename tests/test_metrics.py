import json
import math

from engine import metrics as M


def test_writer_appends_flushed_lines_and_tail_follows_by_offset(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = M.MetricsTail(path)
    assert tail.read_new() == []
    w = M.MetricsWriter(path)
    w.write(1, M.TRAIN, {M.LOSS: 0.5})
    first = tail.read_new()  # visible without close(): flushed per event
    assert [(r.step, r.data[M.LOSS]) for r in first] == [(1, 0.5)]
    w.write(2, M.TRAIN, {M.LOSS: 0.25})
    w.write(2, "eval/heldout", {M.ACCURACY: 0.75})
    new = tail.read_new()
    assert [(r.step, r.split) for r in new] == [(2, "train"), (2, "eval/heldout")]
    assert tail.read_new() == []
    w.close()


def test_torn_last_line_is_left_for_later_and_never_crashes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = json.dumps({"time": 1.0, "step": 1, "split": "train", "data": {"loss": 1.0}})
    path.write_text(good + "\n" + '{"time": 2.0, "step": 2, "spl')
    tail = M.MetricsTail(path)
    assert [r.step for r in tail.read_new()] == [1]
    with open(path, "a") as fh:  # the writer finishes its line
        fh.write('it": "train", "data": {"loss": 0.5}}\n')
    assert [r.step for r in tail.read_new()] == [2]
    assert [r.step for r in M.read_all(path)] == [1, 2]


def test_a_new_writer_starts_after_a_torn_fragment(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"time": 1.0, "step": 1, "split": "train", "data": {}}\n{"time": 2, "st')
    with M.MetricsWriter(path) as w:
        w.write(3, M.TRAIN, {M.LOSS: 0.1})
    recs = M.read_all(path)
    assert [r.step for r in recs] == [1, 3]


def test_garbage_complete_lines_are_counted_and_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('not json\n{"time": 1, "step": 1, "split": "train", "data": {"x": 1}}\n[1,2]\n')
    tail = M.MetricsTail(path)
    assert len(tail.read_new()) == 1 and tail.skipped == 2


def test_non_finite_values_become_null(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with M.MetricsWriter(path) as w:
        w.write(1, M.TRAIN, {M.GRAD_NORM: math.nan, M.LOSS: math.inf, "h": [1.0, math.nan]})
    obj = json.loads(path.read_text())
    assert obj["data"] == {"grad_norm": None, "loss": None, "h": [1.0, None]}


def test_truncated_file_restarts_the_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with M.MetricsWriter(path) as w:
        w.write(1, M.TRAIN, {"a": 1})
        w.write(2, M.TRAIN, {"a": 2})
    tail = M.MetricsTail(path)
    assert len(tail.read_new()) == 2
    path.write_text('{"time": 1, "step": 9, "split": "train", "data": {}}\n')
    assert [r.step for r in tail.read_new()] == [9]


def test_series_picks_one_split_and_name():
    recs = [M.Record(0, 1, "train", {"loss": 1.0}), M.Record(0, 1, "eval/ood", {"loss": 9.0}),
            M.Record(0, 2, "train", {"loss": 0.5, "x": "text"})]
    assert M.series(recs, "train", "loss") == ([1, 2], [1.0, 0.5])


def test_eval_sets_are_listed_heldout_first_then_by_name():
    assert M.eval_set_order(["ood", M.HELDOUT, "alpaca", "ood"]) == [M.HELDOUT, "alpaca", "ood"]
    assert M.eval_set_order(iter(["b", "a"])) == ["a", "b"]


def test_no_module_but_metrics_spells_a_namespaced_key():
    """`diag/…`, `eval/…`, `objective/…`: every such key is built from engine.metrics' names. A
    literal elsewhere (a string, or the fixed part of an f-string) is a second spelling that drifts."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    namespaces = tuple({v.split("/")[0] + "/" for k, v in vars(M).items()
                        if k.isupper() and isinstance(v, str) and "/" in v})
    assert {"diag/", "eval/", "objective/", "policy/", "loss/"} <= set(namespaces)
    found = []
    for path in sorted([*(root / "engine").rglob("*.py"), *(root / "aplot_tui").rglob("*.py")]):
        if path == root / "engine" / "metrics.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and node.value.startswith(namespaces)):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)
