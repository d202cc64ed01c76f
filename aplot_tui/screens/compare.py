"""The compare screen: several runs' curves overlaid per metric, a final/best summary table,
and a config diff of only the fields that differ. `e` exports the table (CSV, Markdown) and the
charts (SVG, PNG) through the same `report` functions `aplot compare --plot` uses."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Header, Static, TabbedContent, TabPane

from aplot_tui.views import report, run_data, significance
from aplot_tui.views.series import Series
from aplot_tui.widgets.charts import PALETTE, RICH_COLORS, Line, MetricChart, step_smoothing
from aplot_tui.widgets.config_diff import ConfigDiff
from aplot_tui.widgets.footer import KeyFooter
from engine import metrics as M
from engine.runs import status as S
from engine.runs import store as mf

from .chart_screen import ChartScreen

VERDICT_POLLS = 5  # a live comparison's verdict is worked out again every this many store polls


class CompareScreen(ChartScreen):
    TITLE = "Compare"
    HELP = """The marked runs side by side. **charts**: one chart per key metric with every
run's curve in its colour (legend on top). **summary**: the final and best value of each key
metric (best by its direction: highest accuracy, lowest loss or ECE; none for KL or a train
batch). Under the verdict, a warning where the runs' last evals differ in step or a run is
unfinished; while one runs, the verdict is worked out again every few seconds. **config diff**: only the
config fields on which the runs differ. The line under the legend says whether the first
difference is real: two runs, pair by pair (paired bootstrap interval, exact McNemar p); two groups
of seeds, the difference paired by seed (t interval). `e` writes table.csv, table.md, charts.svg and
charts.png to a new `compare-<time>` folder. `m` steps the curves' smoothing (an EMA; raw
points stay, faint)."""

    BINDINGS = [
        Binding("1", "tab('charts')", "Charts"),
        Binding("2", "tab('summary')", "Summary"),
        Binding("3", "tab('diff')", "Config diff"),
        Binding("e", "export", "Export"),
        Binding("m", "smoothing", "Smooth"),
        Binding("q", "back", "Back"),
        Binding("escape", "back", "Back", show=False),
    ]

    class Loaded(Message):
        def __init__(self, runs: list[run_data.RunData], analysis: significance.Analysis) -> None:
            self.runs = runs
            self.analysis = analysis
            super().__init__()

    def __init__(self, runs: list[mf.RunPaths]) -> None:
        super().__init__()
        self.run_paths = runs
        self.runs: list[run_data.RunData] = []
        self.metrics: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="charts"):
            with TabPane("charts", id="charts"):
                yield Static("loading…", id="legend")
                yield Static("", id="verdict")
                yield Static("", id="warnings")
                with VerticalScroll():
                    yield Grid(id="chart-grid")
            with TabPane("summary", id="summary"):
                yield DataTable(id="summary-table", zebra_stripes=True, cursor_type="row")
            with TabPane("config diff", id="diff"):
                yield ConfigDiff(id="config-diff")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = f"{len(self.run_paths)} runs"
        self.load()
        self.set_interval(VERDICT_POLLS * self.app.poll_s, self._refresh_if_live)

    def _refresh_if_live(self) -> None:
        """While a compared run is unfinished its evals keep coming: the verdict and the step
        warnings are worked out again (the charts stay: rebuilding them would lose the scroll)."""
        if self.runs and any(S.effective(r.paths, r.manifest) in S.UNFINISHED for r in self.runs):
            self.reload_verdict()

    @work(exclusive=True, group="verdict")
    async def reload_verdict(self) -> None:
        def read() -> tuple[list[run_data.RunData], significance.Analysis]:
            runs = [run_data.load_run(p) for p in self.run_paths]
            return runs, significance.analyse(runs)

        runs, analysis = await asyncio.to_thread(read)
        self._show_verdict(runs, analysis)

    @work(exclusive=True)
    async def load(self) -> None:
        def read() -> tuple[list[run_data.RunData], significance.Analysis]:
            runs = [run_data.load_run(p) for p in self.run_paths]
            return runs, significance.analyse(runs)  # the bootstrap off the event loop too

        runs, analysis = await asyncio.to_thread(read)
        self.post_message(self.Loaded(runs, analysis))

    async def on_compare_screen_loaded(self, message: Loaded) -> None:
        self.runs = message.runs
        self.metrics = run_data.default_metrics(self.runs)
        legend = Text()
        for i, run in enumerate(self.runs):
            legend.append("━━ ", style=RICH_COLORS[PALETTE[i % len(PALETTE)]])
            legend.append(f"{run.label}  ", style="bold")
        self.query_one("#legend", Static).update(legend)
        self._show_verdict(self.runs, message.analysis)
        charts = []
        for key in self.metrics:
            groups = source_groups(key, [run for run in self.runs if key in run.series])
            for source, members in groups.items():
                title = f"{key} · {source}" if len(groups) > 1 else key
                chart = MetricChart(title, legend=False, log_y=M.split_key(key)[1] == M.LEARNING_RATE)
                chart.lines = tuple(
                    Line(run.label, series=_series(*run.series[key]), color=PALETTE[i % len(PALETTE)])
                    for i, run in enumerate(self.runs) if run in members)
                charts.append(chart)
        await self.query_one("#chart-grid", Grid).mount_all(charts)
        self._fill_summary()
        diff = self.query_one(ConfigDiff)
        diff.run_labels = tuple(run.label for run in self.runs)
        diff.diff = tuple((path, tuple(values)) for path, values in run_data.diff_fields([r.config for r in self.runs]))

    def _show_verdict(self, runs: list[run_data.RunData], analysis: significance.Analysis) -> None:
        """The verdict, and under it where each run stands when that makes the verdict unfair
        (last evals at different steps, a run unfinished: views.significance's warnings)."""
        letters = {run.id: run.label for run in runs}
        self.query_one("#verdict", Static).update(Text(significance.verdict_line(analysis, letters), style="bold"))
        warned = significance.warnings(runs, letters)
        self.query_one("#warnings", Static).update(Text("\n".join(f"⚠ {w}" for w in warned), style="yellow"))

    def _fill_summary(self) -> None:
        """One row per value (status, steps, each metric's final and best), one column per run;
        the best run of each metric row is in bold."""
        table = self.query_one("#summary-table", DataTable)
        rows = run_data.table_rows(self.runs)
        table.clear(columns=True)
        table.add_column("", key="what")
        for i, run in enumerate(self.runs):
            table.add_column(Text(run.label, style=RICH_COLORS[PALETTE[i % len(PALETTE)]]), key=run.id)
        for key in list(rows[0])[4:] if rows else []:
            values = [row[key] for row in rows]
            best = run_data.best_across(key, values)  # by the metric's direction; none for KL, a batch
            cells = [Text(report.format_cell(v) or "—", justify="right",
                          style="bold green" if v is not None and v == best else "") for v in values]
            table.add_row(Text(key, style="bold"), *cells, key=key)

    # ---------------------------------------------------------------- actions

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_export(self) -> None:
        if not self.runs:
            self.notify("still loading", severity="warning")
            return
        self.export()

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export(self) -> None:
        out = self.app.export_dir / f"compare-{datetime.fromtimestamp(self.app.clock()):%Y%m%d-%H%M%S}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.csv").write_text(report.table_with_stats(self.runs, "csv"), encoding="utf-8")
        (out / "table.md").write_text(report.table_with_stats(self.runs, "md"), encoding="utf-8")
        svg = report.charts_svg(self.runs, self.metrics)
        (out / "charts.svg").write_text(svg, encoding="utf-8")
        written = "table.csv, table.md, charts.svg"
        try:
            (out / "charts.png").write_bytes(report.svg_to_png(svg))
            written += ", charts.png"
        except RuntimeError as e:
            self.app.call_from_thread(self.notify, str(e), severity="warning")
        self.app.call_from_thread(self.notify, f"exported {written} to {out}")

    def action_smoothing(self) -> None:
        """Every chart to the next EMA weight (0.6 → 0.8 → 0.9 → 0.95 → 0.99 → raw)."""
        weight = step_smoothing(list(self.query(MetricChart)))
        self.notify(f"smoothing: EMA {weight:g}" if weight else "smoothing off: raw points", timeout=2)

    def action_back(self) -> None:
        self.dismiss()


def _series(xs: list[int], ys: list[float]) -> Series:
    s = Series()
    s.extend(xs, ys)
    return s


def eval_source(key: str, run: run_data.RunData) -> str:
    """Where an eval metric's set came from: its data.eval file, else the share of data.train
    held out. Empty for a train metric."""
    split, _name = M.split_key(key)
    if not M.is_eval(split):
        return ""
    data = run.config.get("data", {})
    set_name = M.eval_set(split)
    if set_name in data.get("eval", {}):
        return Path(str(data["eval"][set_name])).name
    return f"{Path(str(data.get('train', ''))).name or 'train'} held out"


def source_groups(key: str, runs: list[run_data.RunData]) -> dict[str, list[run_data.RunData]]:
    """The runs of one chart, split by the data their eval set was drawn from: two runs' `heldout`
    from different data (synthetic and HH) are two sets that share a name, not one curve apart."""
    groups: dict[str, list[run_data.RunData]] = {}
    for run in runs:
        groups.setdefault(eval_source(key, run), []).append(run)
    return groups
