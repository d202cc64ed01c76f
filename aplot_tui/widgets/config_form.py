"""The new-run form, generated from the config schema (engine/config.py).

One row per field: its dotted path, a control fitted to its type (a checkbox for booleans, a
select for choices, a text input otherwise) and its help string, the one copy that the CLI and
`aplot init` also show. The form never validates: it turns its values into dotted overrides
(`to_overrides`), the screen runs them through `config.load` and hands back the problems,
which the form shows under their fields.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_origin

import tomli_w
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Collapsible, Input, Label, Select, Static

from engine import config as config_mod

# top-level tables shown only for one kind of run
KIND_SECTIONS = {"loss": "rm", "ppo": "ppo"}
COLLAPSED = ("eval", "checkpoint", "log")
EMPTY = '""'  # an empty number field: a string, which validation then names as the wrong type


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
            for item in (s.strip() for s in str(raw).split(",") if s.strip()):
                key, sep, val = item.partition("=")
                if not sep or not key.strip() or not val.strip():
                    problems[path] = f"write name=path pairs separated by commas, got {item!r}"
                    break
                table[key.strip()] = val.strip()
            overrides.append(f"{path}={_toml(table)}")
        else:  # numbers: parsed as TOML by the override machinery, checked by validation
            overrides.append(f"{path}={str(raw).strip() or EMPTY}")
    return overrides, problems


def problem_field(problem: str, paths: list[str]) -> tuple[str | None, str]:
    """The form field a `config` problem line is about, and the message without path and file."""
    head, sep, message = problem.partition(": ")
    if not sep:
        return None, problem
    if message.endswith(")") and " (" in message:
        message = message[: message.rindex(" (")]
    owners = [p for p in paths if head == p or head.startswith(p + ".")]
    return (max(owners, key=len) if owners else None), message


class ConfigForm(VerticalScroll):
    """Every config field; posts `Changed` whenever a value changes."""

    DEFAULT_CSS = """
    ConfigForm Collapsible { padding-bottom: 0; border-top: none; }
    ConfigForm .fields { grid-size: 3; grid-columns: 32 34 1fr; grid-rows: auto; height: auto; }
    ConfigForm .fields Label.name { text-style: bold; }
    ConfigForm .fields Checkbox { height: 1; border: none; padding: 0; background: transparent; }
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
        self._initial = values
        self.paths = list(leaf_fields())

    def compose(self) -> ComposeResult:
        groups: dict[str, list] = {}
        for entry in config_mod.iter_fields():
            top = entry[0].split(".")[0] if "." in entry[0] or entry[3] else ""
            groups.setdefault(top, []).append(entry)
        helps = {p: f.metadata.get("help", "") for p, f, _, table in config_mod.iter_fields() if table}
        for top, entries in groups.items():
            title = f"{top} — {helps[top]}" if top else "run"
            with Collapsible(title=title, collapsed=top in COLLAPSED, id=f"sec-{top or 'run'}"):
                with Grid(classes="fields"):
                    for path, fld, tp, is_table in entries:
                        if is_table and path != top:
                            yield Static(f"[{path}]  {fld.metadata.get('help', '')}", classes="subhead")
                        elif not is_table:
                            yield from self._row(path, fld, tp)

    def _row(self, path: str, fld: dataclasses.Field, tp: Any) -> ComposeResult:
        """Three grid cells: the dotted path, the control, and the help (or the field's problem)."""
        value = value_at(self._initial, path, fld)
        choices = fld.metadata.get("choices")
        yield Label(path, classes="name")
        if tp is bool:
            yield Checkbox(value=bool(value), id=f"c-{fid(path)}")
        elif choices:
            yield Select([(c, c) for c in choices], value=value if value in choices else choices[0],
                         allow_blank=False, compact=True, id=f"c-{fid(path)}")
        else:
            yield Input(form_text(value), placeholder=getattr(tp, "__name__", "value"), compact=True,
                        id=f"c-{fid(path)}")
        yield Label(fld.metadata.get("help", ""), classes="help", id=f"h-{fid(path)}")

    def on_mount(self) -> None:
        self._show_kind(self.values().get("kind", "rm"))

    # -------------------------------------------------------------- values

    def control(self, path: str):
        return self.query_one(f"#c-{fid(path)}")

    def values(self) -> dict[str, Any]:
        return {p: self.control(p).value for p in self.paths}

    def set_values(self, data: dict) -> None:
        """Fill every control from a (possibly partial) config dict; absent fields get defaults."""
        fields = leaf_fields()
        for path in self.paths:
            value = value_at(data, path, fields[path][0])
            control = self.control(path)
            control.value = value if isinstance(control, (Checkbox, Select)) else form_text(value)

    def show_problems(self, problems: dict[str, str]) -> None:
        """A field's problem replaces its help line, in red, until it is fixed."""
        fields = leaf_fields()
        for path in self.paths:
            message = problems.get(path, "")
            note = self.query_one(f"#h-{fid(path)}", Label)
            if note.has_class("bad") or message:
                note.update(f"✗ {message}" if message else fields[path][0].metadata.get("help", ""))
                note.set_class(bool(message), "bad")
                self.control(path).set_class(bool(message), "bad")
        for path in problems:  # open a folded section that holds a problem
            section = self.query_one(f"#sec-{path.split('.')[0] if '.' in path else 'run'}", Collapsible)
            section.collapsed = False

    def problem(self, path: str) -> str:
        note = self.query_one(f"#h-{fid(path)}", Label)
        return str(note.render()).removeprefix("✗ ") if note.has_class("bad") else ""

    # -------------------------------------------------------------- events

    def _show_kind(self, kind: str) -> None:
        for top, only in KIND_SECTIONS.items():
            self.query_one(f"#sec-{top}").display = kind == only

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == f"c-{fid('kind')}":
            self._show_kind(str(event.value))
        self.post_message(self.Changed(self))
