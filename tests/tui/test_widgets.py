"""Pure pieces behind the widgets: downsampling, smoothing, ticks, the log tail, ETA, form conversions."""

from __future__ import annotations

import json
import math

import msgspec

from aplot_tui.screens.run import columnize, fields_for
from aplot_tui.screens.tail import LogTail
from aplot_tui.views.series import SMOOTHING, Series, downsample, ema, nice_ticks
from aplot_tui.widgets.config_form import form_text, problem_field
from aplot_tui.widgets.log_pane import last_frame
from aplot_tui.widgets.run_header import eta_seconds, format_duration, step_rate
from engine.metrics import MetricsTail, Record


def test_downsample_keeps_each_buckets_extremes_in_order():
    ys = [0.0] * 100_000
    ys[31_337], ys[77_001] = 9.0, -4.0  # a spike and a dip
    xs = list(range(len(ys)))
    dx, dy = downsample(xs, ys, 100)
    assert len(dx) <= 200 and 9.0 in dy and -4.0 in dy
    assert dx == sorted(dx) and dx[dy.index(9.0)] == 31_337
    assert downsample([1, 2, 3], [3.0, 1.0, 2.0], 2) == ([1, 2, 3], [3.0, 1.0, 2.0])  # small: unchanged
    assert downsample([0, 1, 2, 3], [1.0, 5.0, 2.0, 0.0], 1) == ([1, 3], [5.0, 0.0])


def test_series_view_is_cached_until_an_append():
    s = Series()
    s.extend([1, 2, 3], [1.0, 2.0, 3.0])
    v = s.view(10)
    assert v == ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) and s.view(10) is v
    s.append(4, 0.5)
    assert s.view(10)[1][-1] == 0.5 and s.last == 0.5


def test_nice_ticks():
    assert nice_ticks(0.31, 0.83) == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(1, 60, 4) == [0, 20, 40, 60]
    assert nice_ticks(5, 5) == [2, 4, 6, 8]  # a flat series gets a range around its value


def test_log_tail_follows_holds_torn_lines_and_starts_near_the_end(tmp_path):
    path = tmp_path / "train.log"
    tail = LogTail(path)
    assert tail.read_new() == []  # no file yet
    path.write_text("one\ntwo\nthr")
    assert tail.read_new() == ["one", "two"]
    with open(path, "a") as fh:
        fh.write("ee\n")
    assert tail.read_new() == ["three"]
    path.write_text("x" * 100 + "\nlast line\n")
    late = LogTail(path, backlog=20)  # opens mid-line: the partial first line is dropped
    assert late.read_new() == ["last line"]
    path.write_text("new\n")  # truncated (a fresh log): start over
    assert tail.read_new() == ["new"]


def test_eta_rate_and_durations():
    assert step_rate([(100.0, 10), (110.0, 30)]) == 2.0
    assert step_rate([(100.0, 10)]) == 0.0
    assert eta_seconds(30, 130, 2.0) == 50.0
    assert eta_seconds(130, 130, 2.0) is None and eta_seconds(10, 0, 2.0) is None
    assert (format_duration(50), format_duration(125), format_duration(7322)) == ("50s", "2m 05s", "2h 02m")


def test_columnize_splits_records_into_metric_columns(tmp_path):
    recs = [Record(1.0, 1, "train", {"loss": 0.5, "flag": True, "unshown": 1.0}), Record(2.0, 2, "train", {"loss": 0.4}),
            Record(2.5, 2, "eval/ood", {"accuracy": 0.6, "margin_hist": [0.1], "gap_hist": [1.0]}),
            Record(2.6, 2, "eval/heldout", {"accuracy": 0.7, "margin_hist": [0.2], "gap_hist": [2.0]}),
            Record(2.7, 3, "eval/ood", {"accuracy": 0.65, "margin_hist": [0.3], "gap_hist": [3.0]}),
            Record(3.0, 2, "eval/win", {"win_rate": 0.6, "win_rate_se": 0.05}),
            Record(3.5, 2, "samples", {"samples": [{"prompt": "p", "response": "r", "score": 1.0}]})]
    path = tmp_path / "metrics.jsonl"  # read as the screen reads it: data left raw, then only the shown fields
    path.write_text("".join(json.dumps(msgspec.structs.asdict(r)) + "\n" for r in recs) + '{"torn": \n')
    raw = MetricsTail(path, raw=True).read_new()
    names = frozenset({"loss", "accuracy", "flag"})
    b = columnize(raw, names, fields_for(names))
    assert b.count == 7 and b.last_step == 3
    assert b.columns["loss"] == ([1, 2], [0.5, 0.4]) and "flag" not in b.columns and "unshown" not in b.columns
    assert b.columns["eval/ood/accuracy"] == ([2, 3], [0.6, 0.65])
    assert b.hist == ("eval/heldout", 2, [2.0], [0.2])  # heldout preferred for the scatter, though older
    assert b.win == [(2, 0.6, 0.05)] and b.samples == (2, [{"prompt": "p", "response": "r", "score": 1.0}])
    assert b.times == [(1.0, 1), (2.0, 2)]
    only = columnize(raw, frozenset({"accuracy"}), fields_for(frozenset({"accuracy"})))
    assert set(only.columns) == {"eval/ood/accuracy", "eval/heldout/accuracy"} and only.hist == b.hist
    no_heldout = columnize([r for r in raw if r.split != "eval/heldout"], names, fields_for(names))
    assert no_heldout.hist == ("eval/ood", 3, [3.0], [0.3])  # else the latest of any set


def test_form_text_and_problem_lines():
    assert form_text(["a", "b"]) == "a, b" and form_text({"ood": "x.jsonl"}) == "ood=x.jsonl"
    paths = ["data.eval", "optim.lr"]
    assert problem_field("data.eval.ood: expected a file path, got '' (defaults)", paths) == \
        ("data.eval", "expected a file path, got ''")
    assert problem_field("something odd", paths) == (None, "something odd")


def test_the_log_pane_shows_a_progress_bar_as_its_last_frame():
    bar = "Writing model shards:   0%|          | 0/1 [00:00<?, ?it/s]\rWriting model shards: 100%|##| 1/1 [00:00]"
    assert last_frame(bar) == "Writing model shards: 100%|##| 1/1 [00:00]"
    assert last_frame("50%\r100%\r") == "100%"  # a trailing return leaves the last drawn frame
    assert last_frame("[aplot] resolved: {}") == "[aplot] resolved: {}"
    assert last_frame("\r") == ""


def _ema_by_hand(ys: list[float], w: float) -> list[float]:
    last, count, out = 0.0, 0, []
    for y in ys:
        if not math.isfinite(y):
            out.append(y)
            continue
        count += 1
        last = last * w + (1 - w) * y
        out.append(last / (1 - w ** count))
    return out


def test_ema_is_tensorboards_debiased_average_across_blocks_and_appends():
    ys = [math.sin(i / 7) + (i % 3) for i in range(5000)]
    ys[10] = float("nan")  # a non-finite point neither moves the average nor counts
    for w in SMOOTHING[1:]:
        want = _ema_by_hand(ys, w)
        head, state = ema(ys[:1234], w)
        tail, _ = ema(ys[1234:], w, state)
        got = list(head) + list(tail)
        assert math.isnan(got[10])
        assert max(abs(a - b) for a, b in zip(got, want, strict=True) if math.isfinite(b)) < 1e-9
    assert ema([3.0], 0.9)[0].tolist() == [3.0]  # debiased: the first point is itself, not 0.3


def test_series_smoothed_view_extends_incrementally_and_keeps_raw_apart():
    s = Series()
    s.extend(list(range(100)), [float(i % 2) for i in range(100)])
    first = s.smoothed(0.9)
    s.extend(list(range(100, 150)), [5.0] * 50)
    assert len(s.smoothed(0.9)) == 150 and s.smoothed(0.9)[:100].tolist() == first.tolist()
    assert s.view(1000, 0.9)[1] == s.smoothed(0.9).tolist() and s.view(1000)[1] == list(s.ys)


def test_log_highlighter_makes_aplot_lines_and_tracebacks_stand_out():
    from rich.text import Text

    from aplot_tui.widgets.log_pane import LogHighlighter

    def styles(line: str) -> set[str]:
        text = Text(line)
        LogHighlighter().highlight(text)
        return {str(span.style) for span in text.spans if span.start == 0 and span.end == len(line)}

    assert "bold reverse" in styles("[aplot] checkpoint step-50 saved")
    assert "bold red" in styles("Traceback (most recent call last):")
    assert "bold red" in styles('  File "engine/reward.py", line 212, in train')
    assert "bold red" in styles("RuntimeError: CUDA out of memory")
    assert "bold red" in styles("[aplot] failed: non-finite loss at step 3")
    assert not styles("step 10 loss=0.5")  # ordinary lines keep the usual number highlighting only


def test_samples_show_text_not_raw_bytes():
    from aplot_tui.widgets.samples import shown

    assert shown("\ufffd2\ufffd^ ok\x1b[31m\n\nthere") == "·2·^ ok·[31m there"
    assert shown("plain words") == "plain words"


def test_a_charts_legend_is_on_its_border_not_over_the_data():
    from aplot_tui.views.series import Series
    from aplot_tui.widgets.charts import Line, MetricChart

    a, b = Series(), Series()
    a.extend([1, 2], [0.5, 0.4])
    b.extend([1, 2], [0.6, 0.5])
    chart = MetricChart("loss", xlabel="step")
    chart.lines = (Line("train", series=a), Line("heldout", series=b, color="orange"))
    chart.watch_lines()
    from rich.text import Text as RichText

    subtitle = RichText.from_markup(str(chart.border_subtitle)).plain
    assert subtitle == "━ train ━ heldout · ema 0.6"


def test_a_long_value_in_the_config_diff_keeps_its_end_within_its_column():
    from aplot_tui.widgets.config_diff import VALUE_WIDTH, format_value

    path = "/very/long/" + "nested/" * 30 + "hh_rlhf_helpful_base.jsonl"
    cell = format_value(path).plain
    assert len(cell) == VALUE_WIDTH and cell.endswith("hh_rlhf_helpful_base.jsonl") and cell.startswith("…")
    assert format_value("short").plain == "short"
