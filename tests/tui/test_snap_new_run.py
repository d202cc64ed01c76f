"""Snapshot of the new-run screen with a field in error (the preview command is machine-independent)."""

from __future__ import annotations

import sys

import pytest

from aplot_tui.screens.new_run import NewRunScreen

from .helpers import SIZE, runs_loaded, wait_for


@pytest.mark.parametrize("size", [SIZE, (80, 24), (160, 48)], ids=["140x40", "80x24", "160x48"])
def test_new_run_screen(make_app, snap_compare, monkeypatch, size):
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")  # the preview names the interpreter

    async def run_before(pilot):
        await runs_loaded(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen))
        screen = pilot.app.screen
        screen.form.control("name").value = "hh-aplot"
        screen.form.control("model.max_length").value = "4"
        await wait_for(pilot, lambda: len(screen.problems) == 1)
        name = screen.form.control("name")
        name.cursor_blink = False  # a blinking cursor would make the snapshot depend on timing
        name.focus()
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)
