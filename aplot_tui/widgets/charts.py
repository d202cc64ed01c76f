"""A metric chart: plotext drawing inside a bordered panel, fed with `Line`s.

The chart owns only drawing. It receives its lines as a reactive (the screen assigns a new
tuple when data arrives) and downsamples each `Series` to its own width at render time, so a
100,000-point run draws as fast as a 1,000-point one and resizing needs no new data. With
`smoothing` above 0 a series is drawn twice: its raw points as faint dots, its EMA as a line in
its colour.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

from rich.text import Text
from textual.app import RenderResult
from textual.content import Content
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from aplot_tui.views.series import SMOOTHING, Series, nice_ticks

# plotext colour names, in the order series are given them (train, then each eval set / each run)
PALETTE = ("cyan", "orange", "magenta", "green", "red", "blue", "yellow", "gray")
RAW_COLOR = 240  # the raw points under a smoothed line: a dark grey (xterm-256), faint on any theme
RICH_COLORS = {"cyan": "cyan", "orange": "dark_orange", "magenta": "magenta", "green": "green",
               "red": "red", "blue": "blue", "yellow": "yellow", "gray": "grey50"}  # for legends outside


@dataclass(frozen=True)
class Line:
    label: str
    series: Series | None = None  # drawn downsampled to the chart's width
    xs: tuple[float, ...] = ()  # or explicit points (scatter, error bars)
    ys: tuple[float, ...] = ()
    color: str = "cyan"
    kind: Literal["line", "scatter", "error"] = "line"
    yerr: tuple[float, ...] = field(default=())

    def points(self, max_points: int, smoothing: float = 0.0) -> tuple[list[float], list[float]]:
        if self.series is not None:
            return self.series.view(max_points, smoothing)
        return list(self.xs), list(self.ys)


class MetricChart(PlotextPlot, can_focus=True):
    """One panel of the run or compare screen; focusable, so a panel can be maximized."""

    DEFAULT_CSS = """
    MetricChart {
        border: round $primary 50%;
        border-title-color: $text;
        border-title-style: bold;
        height: 1fr;
        min-height: 8;
    }
    MetricChart:focus { border-title-color: $accent; border-title-style: bold reverse; }  /* no layout */
    """

    lines: reactive[tuple[Line, ...]] = reactive((), always_update=True)
    empty_text: reactive[str] = reactive("waiting for data")
    smoothing: reactive[float] = reactive(SMOOTHING[1])  # EMA weight of line series; 0: raw points only

    def __init__(self, title: str, *, xlabel: str = "", legend: bool = True, log_y: bool = False,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.log_y = log_y  # a learning rate spans decades (warm-up from 0, decay): linear, it was a wall and a floor
        self.border_title = title
        self.xlabel = xlabel
        self.legend = legend  # off where one legend serves every chart (compare)
        self.integer_x = xlabel in ("step", "")  # round step ticks, not plotext's 15.8, 30.5
        self._cache: tuple | None = None  # ((size, theme), rendered plot)
        self.render_cost = 0.0  # seconds the last plot took to build (the run screen paces redraws by it)

    @property
    def has_data(self) -> bool:
        return any(line.series is not None and len(line.series) or line.ys for line in self.lines)

    def watch_lines(self) -> None:
        """The legend goes on the bottom border, beside the smoothing: drawn inside the plot
        (plotext's), it covered the data, at 80×24 most of a 2-row chart."""
        self._cache = None
        subtitle = Text()
        if self.legend and len(self.lines) > 1:
            for line in self.lines:
                subtitle.append("━ ", style=RICH_COLORS.get(line.color, ""))
                subtitle.append(f"{line.label} ")
        if self.smoothing and self._smoothable:
            subtitle.append(f"· ema {self.smoothing:g}" if subtitle else f"ema {self.smoothing:g}")
        self.border_subtitle = subtitle

    def watch_smoothing(self) -> None:
        self.watch_lines()

    @property
    def _smoothable(self) -> bool:
        return any(line.series is not None and line.kind == "line" for line in self.lines)

    def render(self) -> RenderResult:
        """Build the plot only when its data, size or theme changed; a focus or style change
        repaints from the cache (plotext needs tens of ms per chart)."""
        if not self.has_data:
            return Text(self.empty_text, style="dim", justify="center")
        key = (self.size, self.app.theme)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        t0 = time.perf_counter()
        plt = self.plt
        plt.clear_data()
        plt.yscale("log" if self.log_y else "linear")
        width = max(self.size.width - 8, 4)  # minus the y tick labels
        for line in self.lines:
            xs, ys = self._drawable(*line.points(2 * width))  # braille: two dots per cell
            if not ys:
                continue
            label = None  # the legend is on the border (watch_lines)
            if self.smoothing and line.series is not None and line.kind == "line":
                # raw, faint, under its EMA: points, not a line (a noisy line's segments cross the
                # whole height, so plotext rasterises ~20× the dots: 3× the chart's build time)
                plt.scatter(xs, ys, color=RAW_COLOR, marker="braille")
                xs, ys = self._drawable(*line.points(2 * width, self.smoothing))
                plt.plot(xs, ys, color=line.color, label=label, marker="braille")
            elif line.kind == "scatter":
                plt.scatter(xs, ys, color=line.color, label=label, marker="dot")
            elif line.kind == "error":
                plt.error(xs, ys, yerr=list(line.yerr), color=line.color, label=label)
            else:
                plt.plot(xs, ys, color=line.color, label=label, marker="braille")
        plt.xlabel(self.xlabel)
        self._ticks(width)
        plot = Content.from_rich_text(super().render())  # converted once, not at every repaint
        self._cache = (key, plot)
        self.render_cost = time.perf_counter() - t0
        return plot

    def _drawable(self, xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
        """On a log axis only the positive points (a schedule's 0 at either end has no place)."""
        if not self.log_y:
            return xs, ys
        keep = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]
        return [x for x, _ in keep], [y for _, y in keep]

    def _ticks(self, width: int) -> None:
        """Round ticks (plotext's own read 15.8, 30.5 and 0.0000200), inside the data's range."""
        points = [self._drawable(*line.points(2 * width)) for line in self.lines]
        xs = [x for p in points for x in p[0]]
        ys = [y for p in points for y in p[1]] + [
            y + s * e for line in self.lines for y, e in zip(line.ys, line.yerr, strict=False) for s in (-1, 1)]
        if not xs:
            return
        if self.integer_x:
            ticks = [t for t in nice_ticks(min(xs), max(xs), max(3, width // 8)) if min(xs) <= t <= max(xs)]
            self.plt.xticks(ticks, [f"{t:g}" for t in ticks])
        if not ys:
            return
        lo, hi = min(ys), max(ys)
        if self.log_y:
            ticks = log_ticks(lo, hi)
            self.plt.yticks(ticks, [f"{t:.0e}".replace("e-0", "e-") for t in ticks])
            return
        # always set them: plotext keeps the last ticks given, so a skipped call would show the
        # ticks of an earlier draw (the run screen's first, partial one) over today's data
        options = [[t for t in nice_ticks(lo, hi, n) if lo <= t <= hi]
                   for n in (max(3, self.size.height // 3), max(6, self.size.height // 2))]
        ticks = next((o for o in options if len(o) >= 3), max(options, key=len)) or [lo]
        rows = max(2, self.size.height - 5)  # plot rows: the border, x axis and x label take the rest
        # at most one per row, and on a chart of under 5 rows one per two: plotext drops a crowded
        # label in no fixed order (string hashing), so a short chart's ticks changed run to run
        most = rows if rows >= 5 else max(1, rows // 2)
        ticks = ticks[::-(-len(ticks) // most)]
        self.plt.yticks(ticks, [f"{t:.3g}" for t in ticks])


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten inside [lo, hi] (both positive); with fewer than two, their 2× and 5× as well."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks: list[float] = []
    for steps in ((1,), (1, 2, 5)):
        ticks = [m * 10.0 ** d for d in decades for m in steps if lo <= m * 10.0 ** d <= hi]
        if len(ticks) >= 2:
            return ticks
    return ticks or [lo]


def step_smoothing(charts: list[MetricChart]) -> float:
    """The screens' smoothing key: every chart to the next EMA weight (after 0.99, back to raw)."""
    if not charts:
        return 0.0
    current = charts[0].smoothing
    weight = SMOOTHING[(SMOOTHING.index(current) + 1) % len(SMOOTHING)] if current in SMOOTHING else 0.0
    for chart in charts:
        chart.smoothing = weight
    return weight
