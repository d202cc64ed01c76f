"""Reward-model diagnostics for the run screen: the length-bias table and the hardest pairs.

An eval accuracy can be a length rule in disguise; the table sets each eval set's accuracy
beside the "shorter wins" and "longer wins" rules, splits it by which response is longer, and
adds ECE and the reward-length correlation. The inspector lists the pairs the model gets most
wrong and shows their full texts. The screen feeds both (`ingest`, `ingest_hard_pairs`);
nothing here reads a file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from aplot_tui.views.sections_text import compact_lines
from aplot_tui.views.textfmt import fmt, shorten
from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.analysis.bias_checks import latest_diagnostics

EvalMap = dict[str, tuple[int, dict[str, Any]]]  # set -> (step, eval record data)
HardMap = dict[str, dict]  # set -> {step, set, pairs}


COLUMNS = ("set", "step", "accuracy", "rule: shorter", "rule: longer", "chosen shorter", "similar",
           "chosen longer", "ECE", "r~len")
COMPACT_COLUMNS = ("set", "step", "acc", "short", "long", "c<", "c≈", "c>", "ECE", "r~len")
COMPACT_BELOW = 120  # columns: narrower terminals get short headings and no pair counts
LEGEND = ("rules: accuracy of 'the shorter (longer) response wins' on the same pairs; "
          "buckets: model accuracy (pairs) by len⁺ − len⁻; r~len: reward-length correlation")
COMPACT_LEGEND = "short/long: length rules · c< c≈ c>: accuracy when chosen is shorter/similar/longer"


class DiagnosticsTable(Widget):
    """One row per eval set; a warning line under the table for each set that looks like length.

    Its height is exactly its lines (header, one per set, legend, warnings), so the hard-pairs
    inspector below can never squeeze its rows away, at any terminal size."""

    DEFAULT_CSS = """
    DiagnosticsTable { height: auto; padding: 0 1; }
    """

    evals: reactive[EvalMap] = reactive(dict, layout=True)

    def _warnings(self) -> list[Text]:
        out = []
        for name, (_step, data) in self.evals.items():
            warning = D.length_bias_warning(data.get(M.ACCURACY), data)
            if warning:
                out.append(Text(f"⚠ {name}: {warning}", style="bold yellow", no_wrap=True, overflow="ellipsis"))
        return out

    def _scores(self) -> list[Text]:
        """RewardBench's way: per set with subsets, its sections' scores and its subsets' accuracies."""
        return [Text(line, style="cyan", no_wrap=True, overflow="ellipsis")
                for name, (_step, data) in self.evals.items() for line in compact_lines(name, data)]

    def get_content_height(self, container, viewport, width: int) -> int:
        return 1 if not self.evals else 2 + len(self.evals) + len(self._warnings()) + len(self._scores())

    def render(self) -> RenderResult:
        if not self.evals:
            return Text("no diagnostics yet (written with each eval)", style="dim", justify="center")
        compact = self.size.width < COMPACT_BELOW
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
        for col in COMPACT_COLUMNS if compact else COLUMNS:
            table.add_column(col, justify="left" if col == "set" else "right", no_wrap=True)
        for name, (step, data) in self.evals.items():
            warning = D.length_bias_warning(data.get(M.ACCURACY), data)
            buckets = [fmt(data.get(D.BUCKET_ACC[b])) + ("" if compact else f" ({int(data.get(D.BUCKET_N[b]) or 0)})")
                       for b in D.BUCKETS]
            table.add_row(name, str(step), Text(fmt(data.get(M.ACCURACY)),
                                                 style="bold yellow" if warning else "bold"),
                          fmt(data.get(M.SHORTER_WINS_ACC)), fmt(data.get(M.LONGER_WINS_ACC)),
                          *buckets, fmt(data.get(M.ECE)), fmt(data.get(M.REWARD_LENGTH_CORR), "+.2f"))
        legend = Text(COMPACT_LEGEND if compact else LEGEND, style="dim", no_wrap=True, overflow="ellipsis")
        return Group(table, legend, *self._scores(), *self._warnings())


def pair_detail(entry: dict, rank: int) -> Text:
    """The full texts of one hard pair, with its rewards, gap, margin and lengths."""
    p = entry["pairs"][rank]
    head = (f"{entry['set']} · step {entry['step']} · #{rank + 1} (pair {p.get('index', '?')})  "
            f"r⁺ {fmt(p.get('chosen_reward'))}  r⁻ {fmt(p.get('rejected_reward'))}  "
            f"gap {fmt(p.get('gap'), '+.3f')}  margin {fmt(p.get('margin'))}")
    if "chosen_len" in p and "rejected_len" in p:
        head += f"  tokens {p['chosen_len']} vs {p['rejected_len']}"
    text = Text(head, style="bold")
    for label, key, style in (("PROMPT", "prompt", "dim"), ("CHOSEN", "chosen", "green"),
                              ("REJECTED", "rejected", "red")):
        text.append(f"\n\n{label}\n", style=f"bold {style}")
        text.append(str(p.get(key, "")))
    if p.get("truncated"):
        text.append("\n\n(the model saw this pair cut to max_length)", style="dim italic")
    if p.get("text_cut"):
        text.append("\n\n(texts were cut when written)", style="dim italic")
    return text


class HardPairInspector(Widget):
    """The hardest pairs of one eval set: a list to move through, the full texts beside it."""

    DEFAULT_CSS = """
    HardPairInspector { height: 1fr; min-height: 8; border: round $primary 50%;
                        border-title-color: $text; border-title-style: bold; }
    HardPairInspector:focus-within { border: round $accent; }
    HardPairInspector Horizontal { height: 1fr; }
    HardPairInspector #hp-list { width: 2fr; height: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    HardPairInspector #hp-scroll { width: 3fr; height: 1fr; padding: 0 1; }
    """

    BINDINGS = [
        Binding("right_square_bracket", "cycle_set(1)", "next set"),
        Binding("left_square_bracket", "cycle_set(-1)", "prev set"),
    ]

    entries: reactive[HardMap] = reactive(dict)
    set_name: reactive[str] = reactive("")
    rank: reactive[int] = reactive(0)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(id="hp-list", markup=False)
            with VerticalScroll(id="hp-scroll"):
                yield Static(id="hp-detail", markup=False)

    def on_mount(self) -> None:
        self._sync()

    @property
    def entry(self) -> dict | None:
        return self.entries.get(self.set_name)

    @property
    def detail_text(self) -> str:
        """What the detail pane shows, as plain text."""
        entry = self.entry
        return pair_detail(entry, self.rank).plain if entry and entry["pairs"] else ""

    def watch_entries(self) -> None:
        if self.entries and self.set_name not in self.entries:
            self.set_name = next(iter(self.entries))  # its watcher syncs
        else:
            self._sync()

    def watch_set_name(self) -> None:
        self.rank = 0
        self._sync()

    def watch_rank(self) -> None:
        self._show_detail()

    def action_cycle_set(self, delta: int) -> None:
        names = list(self.entries)
        if len(names) > 1:
            self.set_name = names[(names.index(self.set_name) + delta) % len(names)]

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self.rank = event.option_index

    def _sync(self) -> None:
        """Rebuild the list for the current set, keeping the highlighted rank where it still fits."""
        if not self.is_mounted:
            return
        entry = self.entry
        self.border_title = (f"hardest pairs · {entry['set']} · step {entry['step']}"
                             + ("  ([ ] other set)" if len(self.entries) > 1 else "")
                             if entry else "hardest pairs")
        pairs = entry["pairs"] if entry else []
        options = self.query_one("#hp-list", OptionList)
        options.clear_options()
        options.add_options([Option(Text(f"{fmt(p.get('gap'), '+.2f'):>6} {shorten(p.get('chosen', ''), 40)}"))
                             for p in pairs])
        if pairs:
            self.rank = min(self.rank, len(pairs) - 1)
            options.highlighted = self.rank
        self._show_detail()

    def _show_detail(self) -> None:
        if not self.is_mounted:
            return
        entry = self.entry
        detail = self.query_one("#hp-detail", Static)
        if entry and entry["pairs"] and self.rank < len(entry["pairs"]):
            detail.update(pair_detail(entry, self.rank))
        else:
            detail.update(Text("no hard pairs yet (written with each eval)", style="dim"))
        self.query_one("#hp-scroll", VerticalScroll).scroll_home(animate=False)


class DiagnosticsPanel(Vertical):
    """The run screen's diagnostics tab: the table above, the inspector below."""

    DEFAULT_CSS = """
    DiagnosticsPanel { height: 1fr; }
    """

    evals: reactive[EvalMap] = reactive(dict)
    hard_pairs: reactive[HardMap] = reactive(dict)

    def compose(self) -> ComposeResult:
        yield DiagnosticsTable().data_bind(DiagnosticsPanel.evals)
        yield HardPairInspector().data_bind(entries=DiagnosticsPanel.hard_pairs)

    def ingest(self, records: Iterable[M.Record]) -> None:
        """Take any metrics records (e.g. a MetricsAppended batch); keeps each set's newest eval."""
        new = latest_diagnostics(records)
        if new:
            self.evals = {**self.evals, **new}

    def ingest_hard_pairs(self, entries: Iterable[dict]) -> None:
        """Take {step, set, pairs} entries as `read_hard_pairs` returns them; the last per set wins."""
        new = D.latest_hard_pairs(entries)
        if new:
            self.hard_pairs = {**self.hard_pairs, **new}
