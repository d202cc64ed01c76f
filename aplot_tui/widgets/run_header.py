"""The run screen's header line: status, progress, step rate and ETA (or how long the run took)."""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.reactive import reactive
from textual.widget import Widget

from engine.runs import status as S

from .run_table import STATUS_STYLE


def format_duration(seconds: float) -> str:
    s = int(round(max(seconds, 0)))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def eta_seconds(step: int, total: int, steps_per_s: float) -> float | None:
    """Time left at the current rate; None while the rate or the total is unknown."""
    if total <= 0 or steps_per_s <= 0 or step >= total:
        return None
    return (total - step) / steps_per_s


def step_rate(points: list[tuple[float, int]]) -> float:
    """Steps per second over a window of (time, step) pairs, oldest first."""
    if len(points) < 2:
        return 0.0
    (t0, s0), (t1, s1) = points[0], points[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else 0.0


class RunHeader(Widget):
    DEFAULT_CSS = """
    RunHeader {
        height: auto;
        max-height: 3;
        padding: 0 1;
        background: $boost;
    }
    """

    title: reactive[str] = reactive("")
    status: reactive[str] = reactive("")
    step: reactive[int] = reactive(0)
    total_steps: reactive[int] = reactive(0)
    steps_per_s: reactive[float] = reactive(0.0)
    elapsed_s: reactive[float] = reactive(0.0)
    error: reactive[str] = reactive("", layout=True)  # its line comes and goes: the layout follows

    def render(self) -> RenderResult:
        text = Text(no_wrap=True, overflow="ellipsis")  # one line whatever the width: its height never races the panels
        text.append(f"● {self.status or '…'}", style=STATUS_STYLE.get(self.status, "dim"))
        text.append(f"  {self.title}", style="bold")
        if self.total_steps:
            frac = min(self.step / self.total_steps, 1.0)
            filled = int(round(frac * 20))
            text.append("  " + "━" * filled, style="green" if self.status == S.RUNNING else "blue")
            text.append("─" * (20 - filled), style="dim")
            text.append(f" step {self.step}/{self.total_steps} ({frac:.0%})")
        elif self.step:
            text.append(f"  step {self.step}")
        if self.status == S.RUNNING:
            if self.steps_per_s:
                text.append(f" · {self.steps_per_s:.2f} steps/s")
            eta = eta_seconds(self.step, self.total_steps, self.steps_per_s)
            if eta is not None:
                text.append(f" · ETA {format_duration(eta)}", style="bold")
        elif self.status in (S.CREATED, S.QUEUED):
            text.append(" · starting…", style="dim")  # a resume's first seconds: not "took" the last attempt
        elif self.elapsed_s:
            text.append(f" · took {format_duration(self.elapsed_s)}")
        if self.error:
            text.append(f"\n{self.error}", style="red")
        return text
