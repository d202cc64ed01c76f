"""The new-run form, generated from the config schema (engine/config.py).

One row per field: its dotted path, a control fitted to its type (a checkbox for booleans, a
select for choices, `name = path` rows for a table of files, a text input otherwise) and its
help string, the one copy that the CLI and `aplot init` also show. The fields people change
(`COMMON`) come first; every other field sits in a folded section per config table, whose
widgets are built only when it is opened, so the form opens at once. Values live in the form's
own dict (`values()`), which a built control keeps current; a field not built yet is read and
set through the same `control(path).value`. The form never validates: it turns its values into
dotted overrides (`to_overrides`), the screen runs them through `config.load` and hands back
the problems, which the form shows under their fields (opening a folded section that has one).
A new config table or run kind needs no code here: sections follow the schema.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_origin

import tomli_w
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, Collapsible, Input, Label, Select, Static

from engine import config as config_mod

# top-level tables shown only for one kind of run
KIND_SECTIONS = {"loss": "rm", "ppo": "ppo", "dpo": "dpo"}
# the fields people change, first and unfolded (those of a kind's own table only for that kind)
COMMON = ("kind", "name", "model.name", "data.train", "data.eval", "loss.type", "ppo.reward_model_run",
          "ppo.prompts", "dpo.type", "dpo.beta", "optim.lr", "optim.batch_size", "optim.max_steps", "optim.epochs",
          "launch.num_processes", "launch.mixed_precision", "launch.cpu")
EMPTY = '""'  # an empty number field: a string, which validation then names as the wrong type
HINTS = {str: "empty", list: "empty · comma-separated", int: "a whole number", float: "a number"}


def fid(path: str) -> str:
    return path.replace(".", "__")


def leaf_fields() -> dict[str, tuple[dataclasses.Field, Any]]:
    return {p: (f, tp) for p, f, tp, table in config_mod.iter_fields() if not table}


def value_at(data: dict, path: str, fld: dataclasses.Field) -> Any:
    """The value at a dotted path of a config dict, or the field's default where it is absent."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return fld.default_factory() if fld.default is dataclasses.MISSING else fld.default
        node = node[part]
    return node


def section_of(path: str) -> str:
    """The folded section a non-common field lives in: its top-level table, or `run`."""
    return path.split(".")[0] if "." in path else "run"


def form_text(value: Any) -> str:
    """A config value as the text a person edits: lists comma-separated, tables as k=v pairs."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _toml(value: Any) -> str:
    """A value as a TOML literal; tables inline (tomli_w writes an empty one as a [section])."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def to_overrides(values: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Form values → `path=<TOML>` overrides, and the problems found before validation."""
    fields = leaf_fields()
    overrides, problems = [], {}
    for path, raw in values.items():
        base = get_origin(fields[path][1]) or fields[path][1]
        if isinstance(raw, bool) or base is bool:
            overrides.append(f"{path}={_toml(bool(raw))}")
        elif base is str:
            overrides.append(f"{path}={_toml(str(raw))}")
        elif base is list:
            items = [s.strip() for s in str(raw).split(",") if s.strip()]
            overrides.append(f"{path}={_toml(items)}")
        elif base is dict:
            table = {}
            for i, (key, val) in enumerate(pairs_of(raw), 1):
                if not key or not val:
                    problems[path] = f"row {i}: give a name and a path (name = path), got {key or '?'} = {val or '?'}"
                    break
                table[key] = val
            overrides.append(f"{path}={_toml(table)}")
        else:  # numbers: parsed as TOML by the override machinery, checked by validation
            overrides.append(f"{path}={str(raw).strip() or EMPTY}")
    return overrides, problems


def pairs_of(raw: Any) -> list[tuple[str, str]]:
    """`name = path` rows from a table, a list of pairs, or `name=path, …` text; blank rows dropped."""
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        items = [item.partition("=")[::2] for item in str(raw).split(",")]
    rows = [(str(k).strip(), str(v).strip()) for k, v in items]
    return [(k, v) for k, v in rows if k or v]


def problem_field(problem: str, paths: list[str]) -> tuple[str | None, str]:
    """The form field a `config` problem line is about, and the message without path and file."""
    head, sep, message = problem.partition(": ")
    if not sep:
        return None, problem
    if message.endswith(")") and " (" in message:
        message = message[: message.rindex(" (")]
    owners = [p for p in paths if head == p or head.startswith(p + ".")]
    return (max(owners, key=len) if owners else None), message


class PairRows(Vertical):
    """A table of files as `name = path` rows; one blank row at the end takes the next entry."""

    DEFAULT_CSS = """
    PairRows { height: auto; width: 1fr; }
    PairRows Horizontal { height: 1; }
    PairRows Input.key { width: 12; }
    PairRows Label { width: 3; content-align: center middle; }
    PairRows Input.val { width: 1fr; }
    """

    class Changed(Message):
        def __init__(self, rows: PairRows) -> None:
            self.rows = rows
            super().__init__()

    def __init__(self, value: Any = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._start = pairs_of(value or {})

    def compose(self) -> ComposeResult:
        for key, val in [*self._start, ("", "")]:
            yield self._row(key, val)

    @staticmethod
    def _row(key: str, val: str) -> Horizontal:
        return Horizontal(Input(key, placeholder="name", compact=True, classes="key"), Label("="),
                          Input(val, placeholder="path to a .jsonl / .json", compact=True, classes="val"))

    @property
    def value(self) -> list[tuple[str, str]]:
        return pairs_of([(row.query_one(".key", Input).value, row.query_one(".val", Input).value)
                         for row in self.query(Horizontal)])

    @value.setter
    def value(self, raw: Any) -> None:
        self.query(Horizontal).remove()
        self.mount_all([self._row(k, v) for k, v in [*pairs_of(raw), ("", "")]])
        self.post_message(self.Changed(self))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        rows = list(self.query(Horizontal))
        if rows and any(i.value for i in rows[-1].query(Input)):  # the blank row was used: add another
            self.mount(self._row("", ""))
        self.post_message(self.Changed(self))


class _Unbuilt:
    """`control(path)` for a field whose section is still folded: reads and sets the form's value."""

    def __init__(self, form: ConfigForm, path: str) -> None:
        self.form, self.path = form, path

    @property
    def value(self) -> Any:
        return self.form._values[self.path]

    @value.setter
    def value(self, value: Any) -> None:
        self.form._values[self.path] = value
        self.form.post_message(ConfigForm.Changed(self.form))

    def set_class(self, *args: Any) -> None:
        pass


class Section(Collapsible):
    """A folded group of fields whose rows are built the first time it opens."""

    def __init__(self, form: ConfigForm, key: str, title: str, paths: list[str], collapsed: bool) -> None:
        super().__init__(title=title, collapsed=collapsed, id=f"sec-{key}")
        self.form, self.key, self.paths = form, key, paths
        self.built = not collapsed

    def compose(self) -> ComposeResult:
        yield self._title
        with self.Contents():
            if self.built:
                yield self.form._grid(self.paths)

    def _watch_collapsed(self, collapsed: bool) -> None:
        """As Collapsible's, without scrolling to itself: a section that opens because validation
        found a problem in it must not pull the view away from the field being typed in."""
        self._update_collapsed(collapsed)
        self.post_message(self.Collapsed(self) if collapsed else self.Expanded(self))

    def _on_collapsible_title_toggle(self, event) -> None:
        super()._on_collapsible_title_toggle(event)
        self.call_after_refresh(self.scroll_visible)  # opened by the user: show it

    def build(self) -> None:
        if not self.built:
            self.built = True
            self.query_one(Collapsible.Contents).mount(self.form._grid(self.paths))

    def on_collapsible_expanded(self, event: Collapsible.Expanded) -> None:
        if event.collapsible is self:
            self.build()


class ConfigForm(VerticalScroll):
    """Every config field; posts `Changed` whenever a value changes."""

    DEFAULT_CSS = """
    ConfigForm Collapsible { padding-bottom: 0; border-top: none; }
    ConfigForm Collapsible Contents { padding: 0 0 0 2; }
    ConfigForm .fields { grid-size: 3; grid-columns: 32 40 1fr; grid-rows: auto; height: auto; }
    ConfigForm .fields Label.name { text-style: bold; }
    ConfigForm .fields Checkbox { height: 1; width: 4; border: none; padding: 0; background: transparent; }
    ConfigForm .fields Input:focus, ConfigForm .fields Select:focus, ConfigForm .fields Checkbox:focus {
        background: $accent 40%;
    }
    ConfigForm .fields Input { width: 1fr; }
    ConfigForm .fields Label.help { padding-left: 2; color: $text-muted; width: 1fr; }
    ConfigForm .fields Label.help.bad { color: $error; text-style: bold; }
    ConfigForm .subhead { column-span: 3; padding-top: 1; color: $accent; text-style: bold; }
    ConfigForm Input.bad, ConfigForm Select.bad, ConfigForm Checkbox.bad { background: $error 30%; }
    """

    class Changed(Message):
        def __init__(self, form: ConfigForm) -> None:
            self.form = form
            super().__init__()

    def __init__(self, values: dict, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fields = leaf_fields()
        self.paths = list(self._fields)
        self._values: dict[str, Any] = {}
        self._problems: dict[str, str] = {}
        self._load(values)

    def _load(self, data: dict) -> None:
        """The form's values from a (possibly partial) config dict: absent fields get defaults."""
        for path, (fld, tp) in self._fields.items():
            value = value_at(data, path, fld)
            self._values[path] = value if tp is bool or fld.metadata.get("choices") or \
                (get_origin(tp) or tp) is dict else form_text(value)

    def compose(self) -> ComposeResult:
        tables = {p: f.metadata.get("help", "") for p, f, _, table in config_mod.iter_fields() if table}
        groups: dict[str, list[str]] = {}
        for path in self.paths:
            if path not in COMMON:
                groups.setdefault(section_of(path), []).append(path)
        yield Section(self, "common", "the fields most runs change", [p for p in self.paths if p in COMMON], False)
        for key, paths in groups.items():
            title = f"{key} — {tables[key]}" if key in tables else "run — seed, tags and notes"
            yield Section(self, key, title, paths, True)

    def _grid(self, paths: list[str]) -> Grid:
        """Three cells per field (path, control, help), with a heading before each nested table."""
        tables = {p: f.metadata.get("help", "") for p, f, _, table in config_mod.iter_fields() if table}
        cells: list[Widget] = []
        seen = set()
        for path in paths:
            parent = path.rpartition(".")[0]
            if parent.count(".") >= 1 and parent not in seen:  # a nested table: model.tiny, loss.aplot
                seen.add(parent)
                cells.append(Static(f"[{parent}]  {tables.get(parent, '')}", classes="subhead"))
            cells += self._row(path)
        return Grid(*cells, classes="fields")

    def _row(self, path: str) -> list[Widget]:
        fld, tp = self._fields[path]
        value = self._values[path]
        choices = fld.metadata.get("choices")
        base = get_origin(tp) or tp
        if tp is bool:
            control: Widget = Checkbox("", value=bool(value), id=f"c-{fid(path)}")
        elif choices:
            control = Select([(c, c) for c in choices], value=value if value in choices else choices[0],
                             allow_blank=False, compact=True, id=f"c-{fid(path)}")
        elif base is dict:
            control = PairRows(value, id=f"c-{fid(path)}")
        else:
            control = Input(value, placeholder=HINTS.get(base, "empty"), compact=True, id=f"c-{fid(path)}")
        problem = self._problems.get(path, "")
        help_label = Label(f"✗ {problem}" if problem else fld.metadata.get("help", ""), classes="help",
                           id=f"h-{fid(path)}")
        help_label.set_class(bool(problem), "bad")
        control.set_class(bool(problem), "bad")
        kind_only = KIND_SECTIONS.get(path.split(".")[0]) if "." in path else None
        name = Label(path, classes="name")
        cells = [name, control, help_label]
        if kind_only and path in COMMON:
            for cell in cells:
                cell.add_class(f"only-{kind_only}")
        return cells

    def on_mount(self) -> None:
        self._show_kind(str(self._values.get("kind", "rm")))

    # -------------------------------------------------------------- values

    def _built(self, path: str) -> bool:
        section = "common" if path in COMMON else section_of(path)
        return self.query_one(f"#sec-{section}", Section).built

    def control(self, path: str):
        """The widget that edits `path`, or a stand-in while its section is folded and unbuilt."""
        found = self.query(f"#c-{fid(path)}") if self._built(path) else None
        return found.first() if found else _Unbuilt(self, path)  # none yet: rows mount on the next refresh

    def values(self) -> dict[str, Any]:
        return dict(self._values)

    def field_help(self, path: str) -> str:
        return self._fields[path][0].metadata.get("help", "")

    def set_values(self, data: dict) -> None:
        """Fill every field from a (possibly partial) config dict; absent fields get defaults."""
        self._load(data)
        for path in self.paths:
            control = self.control(path)
            if not isinstance(control, _Unbuilt):
                control.value = self._values[path]
        self._show_kind(str(self._values.get("kind", "rm")))
        self.post_message(self.Changed(self))

    def show_problems(self, problems: dict[str, str]) -> None:
        """A field's problem replaces its help line, in red, until it is fixed."""
        old, self._problems = self._problems, dict(problems)
        for path in set(old) | set(problems):
            if not self._built(path):
                continue
            message = problems.get(path, "")
            notes = self.query(f"#h-{fid(path)}")
            if not notes:
                continue
            note = notes.first(Label)
            note.update(f"✗ {message}" if message else self.field_help(path))
            note.set_class(bool(message), "bad")
            self.control(path).set_class(bool(message), "bad")
        for path in problems:  # open a folded section that holds a problem (its rows show it)
            section = self.query_one(f"#sec-{'common' if path in COMMON else section_of(path)}", Section)
            section.collapsed = False

    def problem(self, path: str) -> str:
        return self._problems.get(path, "")

    # -------------------------------------------------------------- events

    def _show_kind(self, kind: str) -> None:
        for top, only in KIND_SECTIONS.items():
            self.query_one(f"#sec-{top}").display = kind == only
            for cell in self.query(f".only-{only}"):
                cell.display = kind == only

    def _changed(self, widget: Widget, value: Any) -> None:
        if widget.id and widget.id.startswith("c-"):
            path = widget.id[2:].replace("__", ".")
            self._values[path] = value
            if path == "kind":
                self._show_kind(str(value))
        self.post_message(self.Changed(self))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._changed(event.input, event.value)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._changed(event.checkbox, event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._changed(event.select, event.value)

    def on_pair_rows_changed(self, event: PairRows.Changed) -> None:
        event.stop()
        self._changed(event.rows, event.rows.value)
