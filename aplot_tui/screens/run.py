"""The run screen: live panels over one run's metrics, its log, and stop/resume.

A worker follows `metrics.jsonl` by byte offset (MetricsTail) and `train.log` by byte offset,
turns new records into per-metric columns off the UI thread, and posts them; the screen appends
them to its `Series` and hands each chart its lines. The manifest is re-read when it changes,
and its status re-checked every second (a dead process shows as `crashed`).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter, itemgetter

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.message import Message
from textual.widgets import Header

from aplot_tui.views import health
from aplot_tui.views.series import Series
from aplot_tui.widgets.charts import PALETTE, Line, MetricChart, step_smoothing
from aplot_tui.widgets.footer import KeyFooter
from aplot_tui.widgets.health_strip import HealthStrip
from aplot_tui.widgets.log_pane import LogPane
from aplot_tui.widgets.run_header import RunHeader, step_rate
from aplot_tui.widgets.samples import SamplesView
from engine import metrics as M
from engine.runs import status as S
from engine.runs import store as mf

from .chart_screen import ChartScreen
from .tail import LogTail

CHUNK = 16 << 20  # bytes of metrics parsed per step of the worker: a huge file opens progressively
DRAW_S = 0.25  # a panel redraws at most this often, and never takes more than a quarter of the time
TICK_S = 0.04  # one stale panel is redrawn per tick, so a key waits for one panel's drawing at most
KEY_QUIET_S = 0.15  # after a key press no panel redraws for this long: the key's repaint comes alone
RATE_POINTS = 30  # train points the step rate is measured over
LOADING_DRAW_S = 1.0  # while a long file is still being read, panels show progress this often


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    keys: tuple[tuple[str, str], ...] = ()  # (metric key or eval/*/name pattern, label)
    kind: str = "line"  # line | hist (margin vs gap scatter) | win (error bars) | samples | overopt (score vs KL)
    xlabel: str = "step"


RM_PANELS = (
    Panel("loss", "loss", ((M.LOSS, "train"), (M.EVERY_EVAL + M.LOSS, ""))),
    Panel("accuracy", "accuracy", ((M.ACCURACY, "train"), (M.EVERY_EVAL + M.ACCURACY, ""))),
    Panel("gap", "reward gap  r⁺ − r⁻", ((M.REWARD_GAP, "train"), (M.EVERY_EVAL + M.REWARD_GAP, ""))),
)
APLOT_PANELS = (
    Panel("margin", "OT margin", ((M.MARGIN_MEAN, "mean"), (M.MARGIN_MAX, "max"))),
    Panel("hist", "margin vs reward gap (latest eval)", kind="hist", xlabel="reward gap"),
)
BT_PANELS = (
    Panel("rewards", "rewards", ((M.CHOSEN_REWARD, "chosen"), (M.REJECTED_REWARD, "rejected"))),
    Panel("grad", "grad norm", ((M.GRAD_NORM, "grad norm"),)),
)
LR_PANEL = Panel("lr", "learning rate", ((M.LEARNING_RATE, "lr"),))
PPO_PANELS = (
    # the RM's score (about -3…1) and the judge's gold (0…1) on one axis made gold look flat
    Panel("reward", "reward: rm score · rlhf (score − kl penalty)", ((M.SCORES, "rm score"), (M.RLHF_REWARD, "rlhf"))),
    Panel("gold", "gold score (the judge)", ((M.GOLD_SCORE, "gold"),)),
    Panel("kl", "KL to reference · entropy (nats a response)", ((M.KL, "kl"), (M.ENTROPY, "entropy"))),
    Panel("overopt", "gold against KL: rl · best-of-n", ((M.KL, "kl"), (M.GOLD_SCORE, "gold"), (M.SCORES, "proxy"),
                                                           (M.ENSEMBLE_STD, "disagreement")), kind="overopt",
          xlabel="KL (nats)"),
    Panel("clip", "clip fractions", ((M.CLIPFRAC, "policy"), (M.VALUE_CLIPFRAC, "value"))),
    Panel("win", "win rate ± se", kind="win"),
    Panel("samples", "samples", kind="samples"),
)

DPO_PANELS = (
    Panel("loss", "loss", ((M.LOSS, "train"), (M.EVERY_EVAL + M.LOSS, ""))),
    Panel("margins", "implicit reward: margin · accuracy", ((M.REWARDS_MARGINS, "margin"),
                                                            (M.REWARDS_ACCURACIES, "accuracy"),
                                                            (M.EVERY_EVAL + M.ACCURACY, ""))),
    # both falling together is DPO's known failure: the margin grows while the chosen answer gets less likely
    Panel("logps", "log-probs: chosen · rejected", ((M.LOGPS_CHOSEN, "chosen"), (M.LOGPS_REJECTED, "rejected"))),
    Panel("kl", "KL to reference (held-out prompts, nats)", ((M.EVERY_EVAL + M.KL, ""),)),
    Panel("win", "win rate ± se", kind="win"),
    LR_PANEL,
)


def panels_for(manifest: dict) -> tuple[Panel, ...]:
    if manifest.get("kind") == "ppo":
        return PPO_PANELS
    if manifest.get("kind") == "dpo":
        return DPO_PANELS
    aplot = manifest.get("config", {}).get("loss", {}).get("type") == "aplot"
    return RM_PANELS + (APLOT_PANELS if aplot else BT_PANELS) + (LR_PANEL,)


@dataclass
class Batch:
    """New records, already split into per-metric columns (built in the worker thread)."""

    count: int = 0
    last_step: int = 0
    columns: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    times: list[tuple[float, int]] = field(default_factory=list)  # train (time, step), for the rate
    hist: tuple[str, int, list[float], list[float]] | None = None  # split, step, gaps, margins
    win: list[tuple[int, float, float]] = field(default_factory=list)  # step, rate, se
    samples: tuple[int, list[dict]] | None = None
    bon: dict | None = None  # the reference's best-of-n curve (engine.rl.best_of_n), when the run made one


def shown_names(panels: tuple[Panel, ...]) -> frozenset[str]:
    """The metric names the panels draw (train or eval): only these become series."""
    return frozenset(key.removeprefix(M.EVERY_EVAL) for panel in panels for key, _label in panel.keys)


EVAL_EXTRAS = (M.GAP_HIST, M.MARGIN_HIST, M.WIN_RATE, M.WIN_RATE_SE)  # read from eval records, not drawn as lines


def fields_for(names: frozenset[str]) -> M.DataFields:
    """The decoder of the data a screen showing `names` needs: those and the eval extras."""
    return M.DataFields(sorted(names) + list(EVAL_EXTRAS))


def columnize(records: list[M.RawRecord], names: frozenset[str], fields: M.DataFields) -> Batch:
    """Column by column rather than record by record, and only for the `names` the screen shows:
    each record's data is decoded to just those fields (`fields`, built once per screen) and the
    per-record work runs in C (map, set), so a 100,000-line open costs a fraction of a second."""
    batch = Batch(count=len(records), last_step=max(map(_step, records), default=0))
    by_split: dict[str, list[M.RawRecord]] = {}
    for rec in records:
        by_split.setdefault(rec.split, []).append(rec)
    hists: list[tuple[int, str, list[float], list[float]]] = []  # (step, split, gaps, margins) per eval set
    for split, recs in by_split.items():
        if split == M.SAMPLES_SPLIT:
            batch.samples = (recs[-1].step, list(M.data_dict(recs[-1]).get(M.SAMPLES) or []))
            continue
        if split == M.BON_SPLIT:
            batch.bon = M.data_dict(recs[-1])
            continue
        if split == M.TRAIN:
            batch.times = list(map(_time_step, recs))
        datas = list(map(fields.decode, map(_data, recs)))
        steps = list(map(_step, recs))
        for name in names:
            values = list(map(fields.get[name], datas))
            if set(map(type, values)) <= _NUMBER:  # the usual case: a number in every record
                batch.columns[M.metric_key(split, name)] = (steps, values)
                continue
            numeric = [type(v) in _NUMBER for v in values]  # not bool, None (absent) or text
            if any(numeric):
                batch.columns[M.metric_key(split, name)] = (
                    [s for s, ok in zip(steps, numeric, strict=True) if ok],
                    [v for v, ok in zip(values, numeric, strict=True) if ok])
        if M.is_eval(split):
            gaps, margins = fields.get[M.GAP_HIST], fields.get[M.MARGIN_HIST]
            scatters = [(rec.step, split, list(gaps(d)), list(margins(d)))
                        for rec, d in zip(recs, datas, strict=True) if gaps(d) and margins(d)]
            hists += scatters[-1:]  # this set's latest
            win, se = fields.get[M.WIN_RATE], fields.get[M.WIN_RATE_SE]
            batch.win += [(rec.step, win(d), se(d) or 0.0) for rec, d in zip(recs, datas, strict=True)
                          if win(d) is not None]
    if hists:  # the scatter shows the held-out set's latest eval, else the latest of any set
        heldout = [h for h in hists if h[1] == M.eval_split(M.HELDOUT)]
        step, split, gaps, margins = max(heldout or hists, key=itemgetter(0))
        batch.hist = (split, step, gaps, margins)
    return batch


@dataclass
class Poll:
    """One round of the follow worker."""

    batch: Batch | None
    lines: list[str]
    more: bool  # the metrics file holds more than this round read
    mtime: int | None  # the manifest's
    manifest: dict | None = None  # set when the manifest changed or a status check was due
    status: str = ""


_NUMBER = frozenset((float, int))
_step, _data = attrgetter("step"), attrgetter("data")
_time_step = attrgetter("time", "step")


class RunScreen(ChartScreen):
    TITLE = "Run"
    HELP = """One run, live: the panels follow `metrics.jsonl` and the log pane follows
`train.log` as training writes them. The header shows the status, progress, step rate and the
time left at that rate. `s` stops the run (SIGINT: the trainer saves a checkpoint and exits),
`r` resumes a stopped, failed or crashed run from its last checkpoint, `c` opens the new-run
form with this run's config. `tab` moves between panels, `f` fills the screen with the focused
one, `l` shows only the log, `m` steps the curves' smoothing (an EMA, as TensorBoard's slider;
the raw points stay, faint). Leaving the screen or the app never stops training."""

    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("c", "clone", "Clone"),
        Binding("l", "toggle_log", "Log"),
        Binding("d", "diagnostics", "Diagnostics"),
        Binding("f", "toggle_maximize", "Full"),
        Binding("m", "smoothing", "Smooth"),
        Binding("q", "back", "Back"),
        Binding("escape", "back", "Back", show=False),
    ]

    class MetricsAppended(Message):
        def __init__(self, batch: Batch) -> None:
            self.batch = batch
            super().__init__()

    class LogAppended(Message):
        def __init__(self, lines: list[str]) -> None:
            self.lines = lines
            super().__init__()

    class CaughtUp(Message):
        """The worker has read the metrics file to its end once (posted after its last batch)."""

    class ManifestChanged(Message):
        def __init__(self, manifest: dict, status: str) -> None:
            self.manifest = manifest
            self.status = status
            super().__init__()

    def __init__(self, paths: mf.RunPaths, manifest: dict | None = None) -> None:
        super().__init__()
        self.paths = paths
        self.manifest = manifest if manifest is not None else mf.read(paths)
        self.panels = panels_for(self.manifest)
        self._names = shown_names(self.panels)
        self._fields = fields_for(self._names)
        self.series: dict[str, Series] = {}
        self.records_seen = 0
        self.caught_up = False  # the whole file, as it was when the screen opened, is in the panels
        self._times: list[tuple[float, int]] = []  # every train record's (time, step): rate and wall time
        self._checkpoints: list[str] = []  # checkpoints/ entries, for the best eval's weights
        self._hist: tuple[str, int, list[float], list[float]] | None = None
        self._win: list[tuple[int, float, float]] = []
        self._bon: dict | None = None
        self._drawn: dict[str, tuple] = {}
        self._next_draw: dict[str, float] = {}  # panel id -> earliest time it may redraw
        self._quiet_until = 0.0  # no panel redraw before this (a key was just pressed)
        # earliest progress redraw while the file is still being read: a file read within the first
        # LOADING_DRAW_S draws once, when it is all in (a draw of every panel costs ~0.1 s each)
        self._loading_draw = time.monotonic() + LOADING_DRAW_S
        self._started_at: float | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunHeader(id="run-header")
        yield HealthStrip(id="health")
        with Grid(id="panels"):
            for panel in self.panels:
                if panel.kind == "samples":
                    yield SamplesView(id=f"panel-{panel.id}")
                else:
                    yield MetricChart(panel.title, xlabel=panel.xlabel, id=f"panel-{panel.id}", classes=panel.kind)
        yield LogPane(id="log")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = self.paths.id
        self._status = S.effective(self.paths, self.manifest)
        self._show_manifest(self.manifest, self._status)
        self.set_interval(TICK_S, self._draw_one)
        self.follow()

    # ---------------------------------------------------------------- the worker

    @work(exclusive=True, group="follow")
    async def follow(self) -> None:
        """Poll in a thread, post what is new. One thread hop a round: a long file's chunks
        follow each other without waiting for the event loop between reads."""
        metrics, log = M.MetricsTail(self.paths.metrics, raw=True), LogTail(self.paths.log)
        loop = asyncio.get_running_loop()
        # the first round re-reads the manifest (it may have changed since the screen was made)
        mtime, status, last_check, reached_end = None, self._status, loop.time(), False
        while True:
            poll = await asyncio.to_thread(self._poll, metrics, log, mtime, loop.time() - last_check >= 1.0)
            if poll.batch is not None:
                self.post_message(self.MetricsAppended(poll.batch))
            if poll.lines:
                self.post_message(self.LogAppended(poll.lines))
            if poll.manifest is not None:
                if poll.mtime != mtime or poll.status != status:
                    self.post_message(self.ManifestChanged(poll.manifest, poll.status))
                mtime, status, last_check = poll.mtime, poll.status, loop.time()
            if not poll.more:
                if not reached_end:
                    reached_end = True
                    self.post_message(self.CaughtUp())  # after the last batch's message, in order
                await asyncio.sleep(self.app.follow_s)

    def _poll(self, metrics: M.MetricsTail, log: LogTail, mtime: int | None, check_status: bool) -> Poll:
        """New metrics (as columns) and log lines; the manifest and status when the manifest
        changed or a status check is due (a dead trainer changes no file)."""
        records = metrics.read_new(CHUNK)
        batch = columnize(records, self._names, self._fields) if records else None
        try:
            manifest_mtime = os.stat(self.paths.manifest).st_mtime_ns
        except OSError:
            manifest_mtime = mtime
        poll = Poll(batch, log.read_new(), metrics.offset < M.file_size(self.paths.metrics), manifest_mtime)
        if poll.mtime != mtime or check_status:
            poll.manifest = mf.read(self.paths) if poll.mtime != mtime else self.manifest
            poll.status = S.effective(self.paths, poll.manifest)
        return poll

    # ---------------------------------------------------------------- messages

    def on_run_screen_metrics_appended(self, message: MetricsAppended) -> None:
        batch = message.batch
        self.records_seen += batch.count
        for key, (xs, ys) in batch.columns.items():
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = Series()
            series.extend(xs, ys)
        self._times += batch.times
        if batch.hist is not None:
            self._hist = split, step, _gaps, _margins = batch.hist
            for chart in self.query(".hist").results(MetricChart):  # set once: a title set repaints its panel
                chart.border_title = f"margin vs gap · {M.eval_set(split)} @ step {step}"
        self._win += batch.win
        self._bon = batch.bon or self._bon
        if batch.samples is not None:
            for view in self.query(SamplesView):
                view.step, view.samples = batch.samples[0], tuple(batch.samples[1])
        header = self.query_one(RunHeader)
        header.step = max(header.step, batch.last_step)
        self._show_time()
        if self.caught_up:
            self._show_health()
        if not self.caught_up and time.monotonic() >= self._loading_draw:
            self._draw_all()
            self._loading_draw = time.monotonic() + LOADING_DRAW_S

    def on_run_screen_caught_up(self) -> None:
        self._draw_all()  # the whole file is in: draw it at once, not a panel per tick
        self.caught_up = True
        self._show_health()

    def _show_time(self) -> None:
        """The rate over the current attempt only (a window spanning a resume's pause read 1 step/s
        for 12), and the wall time summed over every attempt (not only the part after a resume)."""
        header = self.query_one(RunHeader)
        header.steps_per_s = step_rate(health.rate_points(self._times, self._started_at)[-RATE_POINTS:])
        header.elapsed_s = health.wall_time_s(self._times, self._started_at)

    def _show_health(self) -> None:
        """The best eval so far and the flags; a run that failed with nothing to draw shows its
        error in place of empty panels (the log below says the rest)."""
        strip = self.query_one(HealthStrip)
        kind = self.manifest.get("kind", "rm")
        key = M.KEY_METRICS.get(kind, ("",))[-1]
        if kind == "ppo":
            xs, ys = [w[0] for w in self._win], [w[1] for w in self._win]
        else:
            series = self.series.get(key)
            xs, ys = (list(series.xs), list(series.ys)) if series is not None else ([], [])
        strip.best = health.best_eval(key, xs, ys, self._checkpoints)
        flags = []
        train = {name: self.series.get(M.metric_key(M.TRAIN, name))
                 for name in (M.LOSS, M.KL, M.SCORES, M.GOLD_SCORE, M.ENSEMBLE_STD)}
        if train[M.LOSS] is not None:
            flags += health.loss_flags(list(train[M.LOSS].ys))
        if train[M.KL] is not None:
            flags += health.kl_flags(list(train[M.KL].ys))
        proxy = train[M.SCORES]
        if proxy is not None:
            flags += health.hacking_flags("win rate", xs, ys, proxy.xs, proxy.ys) if kind == "ppo" else []
            if train[M.GOLD_SCORE] is not None:
                gold = train[M.GOLD_SCORE]
                flags += health.hacking_flags("gold", gold.xs, gold.ys, proxy.xs, proxy.ys)
            if (spread := train[M.ENSEMBLE_STD]) is not None:
                flags += health.overopt_flags(proxy.xs, proxy.ys, spread.xs, spread.ys, self.manifest.get("config"))
        strip.flags = tuple(flags)
        failed = self._status in (S.FAILED, S.CRASHED)
        strip.error = (self.manifest.get("error", "") or f"the run {self._status}") if failed else ""
        if failed and not self.records_seen and not self.has_class("log-only"):
            self.add_class("log-only")  # only then: a class change restyles the whole screen

    def on_run_screen_log_appended(self, message: LogAppended) -> None:
        self.query_one(LogPane).append(message.lines)

    def on_run_screen_manifest_changed(self, message: ManifestChanged) -> None:
        if self.caught_up and message.status != self._status and message.status == S.CRASHED:
            # the trainer writes each eval's line and how it ended to train.log; a crash it cannot say
            self.query_one(LogPane).append([M.end_line(S.CRASHED, self.query_one(RunHeader).step)])
        self.manifest = message.manifest
        self._show_manifest(message.manifest, message.status)

    def _show_manifest(self, manifest: dict, status: str) -> None:
        self._status = status
        try:
            self._checkpoints = sorted(os.listdir(self.paths.checkpoints))
        except OSError:
            self._checkpoints = []
        header = self.query_one(RunHeader)
        cfg = manifest.get("config", {})
        kind = manifest.get("kind", "rm")
        loss = M.loss_label(kind, cfg)
        header.title = f"{manifest.get('name', '')} · {kind}/{loss}"
        header.status = status
        header.total_steps = int(manifest.get("resolved", {}).get("total_steps", 0) or 0)
        header.error = manifest.get("error", "") if status in S.RESUMABLE else ""
        try:
            self._started_at = datetime.fromisoformat(manifest["started_at"]).timestamp()
        except (KeyError, ValueError):
            self._started_at = None
        if self.caught_up:
            self._show_time()
            self._show_health()

    # ---------------------------------------------------------------- drawing

    def _lines(self, panel: Panel) -> tuple[Line, ...]:
        if panel.kind == "hist":
            if self._hist is None:
                return ()
            split, _step, gaps, margins = self._hist
            return (Line(split, xs=tuple(gaps), ys=tuple(margins), color=PALETTE[1], kind="scatter"),)
        if panel.kind == "win":
            if not self._win:
                return ()
            steps, rates, ses = zip(*self._win, strict=True)
            return (Line("win rate", xs=steps, ys=rates, yerr=ses, color=PALETTE[3], kind="error"),)
        if panel.kind == "overopt":
            return self._overopt_lines()
        lines = []
        for key, label in panel.keys:
            if key.startswith(M.EVERY_EVAL):
                name = key.removeprefix(M.EVERY_EVAL)
                for set_name in M.eval_set_order(M.eval_set(split) for split, n in map(M.split_key, self.series)
                                                 if n == name and M.is_eval(split)):
                    lines.append((set_name, self.series[M.metric_key(M.eval_split(set_name), name)]))
            elif key in self.series:
                lines.append((label, self.series[key]))
        return tuple(Line(label, series=s, color=PALETTE[i % len(PALETTE)]) for i, (label, s) in enumerate(lines))

    def _overopt_lines(self) -> tuple[Line, ...]:
        """Gao et al.'s picture: the judge's score against KL from the reference, for the RL run (a
        point a logged step) and for best-of-n sampling from the reference (n = 1, 2, 4, …)."""
        lines = []
        kl, gold = self.series.get(M.metric_key(M.TRAIN, M.KL)), self.series.get(M.metric_key(M.TRAIN, M.GOLD_SCORE))
        if kl is not None and gold is not None:
            xs, ys = M.against(kl.xs, kl.ys, gold.xs, gold.ys)
            if ys:
                lines.append(Line("rl", xs=tuple(xs), ys=tuple(ys), color=PALETTE[0], kind="scatter"))
        if self._bon and self._bon.get(M.BON_KL):
            lines.append(Line("best-of-n", xs=tuple(self._bon[M.BON_KL]), ys=tuple(self._bon[M.BON_GOLD]),
                              color=PALETTE[1]))
        spread = self.series.get(M.metric_key(M.TRAIN, M.ENSEMBLE_STD))
        if kl is not None and spread is not None:  # an RM ensemble: the proxy and its members' disagreement too
            proxy = self.series[M.metric_key(M.TRAIN, M.SCORES)]
            for i, (label, s) in enumerate((("proxy", proxy), ("disagreement", spread))):
                xs, ys = M.against(kl.xs, kl.ys, s.xs, s.ys)
                lines.append(Line(label, xs=tuple(xs), ys=tuple(ys), color=PALETTE[2 + i], kind="scatter"))
        return tuple(lines)

    def _stale(self) -> list[tuple[Panel, tuple, tuple[Line, ...]]]:
        out = []
        for panel in self.panels:
            if panel.kind == "samples":
                continue
            lines = self._lines(panel)
            signature = tuple((line.label, len(line.series) if line.series else len(line.ys)) for line in lines)
            if signature != self._drawn.get(panel.id):
                out.append((panel, signature, lines))
        return out

    def _give(self, panel: Panel, signature: tuple, lines: tuple[Line, ...]) -> None:
        self._drawn[panel.id] = signature
        self.query_one(f"#panel-{panel.id}", MetricChart).lines = lines

    def _draw_all(self) -> None:
        for stale in self._stale():
            self._give(*stale)

    def on_key(self) -> None:
        """Whatever the key does (focus, maximize, log) repaints in a frame of its own, not in one
        that also rebuilds a streaming panel's plot."""
        self._quiet_until = time.monotonic() + KEY_QUIET_S

    def _draw_one(self) -> None:
        """While a run streams in, redraw one stale panel per tick, the one waiting longest: a
        key press then waits for one panel's drawing at most, never for the whole grid. A panel
        whose drawing is slow is redrawn less often (never more than a quarter of the time)."""
        now = time.monotonic()
        if not self.caught_up or now < self._quiet_until:
            return
        due = [s for s in self._stale() if now >= self._next_draw.get(s[0].id, 0.0)]
        if not due:
            return
        panel, signature, lines = min(due, key=lambda s: self._next_draw.get(s[0].id, 0.0))
        self._give(panel, signature, lines)
        chart = self.query_one(f"#panel-{panel.id}", MetricChart)
        self._next_draw[panel.id] = now + max(DRAW_S, 4 * chart.render_cost)

    # ---------------------------------------------------------------- actions

    def action_stop(self) -> None:
        self.app.stop_run(self.paths.id)

    def action_resume(self) -> None:
        self.app.resume_run(self.paths.id)

    def action_clone(self) -> None:
        self.app.clone_run(self.paths.id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`d` is for reward-model runs: a PPO run writes no bias checks or hard pairs, so the
        key shows disabled there rather than opening a screen that waits for data never written."""
        if action == "diagnostics" and self.manifest.get("kind") == "ppo":
            return None
        return True

    def action_diagnostics(self) -> None:
        """Length bias, calibration and the hardest pairs of each eval set (reward-model runs)."""
        from aplot_tui.screens.diagnostics import DiagnosticsScreen

        self.app.push_screen(DiagnosticsScreen(self.paths))

    def action_smoothing(self) -> None:
        """Every line chart to the next EMA weight (0.6 → 0.8 → 0.9 → 0.95 → 0.99 → raw)."""
        weight = step_smoothing(list(self.query(MetricChart)))
        self.notify(f"smoothing: EMA {weight:g}" if weight else "smoothing off: raw points", timeout=2)

    def action_toggle_log(self) -> None:
        self.toggle_class("log-only")

    def action_toggle_maximize(self) -> None:
        """The focused panel (tab moves between them) fills the screen, or goes back."""
        if isinstance(self.focused, LogPane):
            self.action_toggle_log()  # the log grows into the panels' room: maximized, Log drew rows of hatching
        elif self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused)

    def action_back(self) -> None:
        self.dismiss()
