"""A monkey over every screen: seeded random keys at three sizes on the fixture runs.

Launches, stops and resumes are recorded, not carried out (the lifecycle calls the screens make
are replaced), so the keys can press anything. The test passes when no key raised: the app is
still running, or it quit because a key asked it to. Other seeds: APLOT_MONKEY_SEED=n.
"""

from __future__ import annotations

import os
import random

import pytest

from aplot_tui.screens.runs import QUIT
from engine.runs import lifecycle
from engine.runs import store as mf

from .helpers import APLOT, BT, EMD, LS, PPO, drive, runs_loaded

KEYS = ("up", "down", "left", "right", "pageup", "pagedown", "home", "end", "enter", "escape", "tab",
        "shift+tab", "space", "q", "y", "n", "c", "m", "s", "r", "d", "f", "l", "o", "w", "slash", "a", "1",
        "backspace", "f1", "ctrl+r", "ctrl+p", "minus", "period")
SIZES = ((80, 24), (120, 36), (160, 48))
PRESSES = 5  # a screen: ~0.13 s a key (each waits for its repaint); 3 sizes × 8 screens ≈ 20 s
SEED = int(os.environ.get("APLOT_MONKEY_SEED", "25"))


def _openers(app):
    return {
        "runs": lambda: None,
        "run rm": lambda: app.open_run(APLOT),
        "run ppo": lambda: app.open_run(PPO),
        "run failed": lambda: app.open_run(LS),
        "new run": app.new_run,
        "clone": lambda: app.clone_run(EMD),
        "compare": lambda: app.compare([APLOT, BT, EMD]),
        "help": app.action_help,
    }


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_random_keys_on_every_screen_raise_nothing(make_app, monkeypatch, size):
    calls: list[tuple[str, str]] = []

    def recorded(name):
        def call(target, *args, **kwargs):
            calls.append((name, getattr(target, "id", str(target))))
            if name == "start":
                raise mf.RunError("monkey: launch recorded, not started")
            return "stopped" if name == "stop" else None
        return call

    for name in ("start", "stop", "resume", "watch"):
        monkeypatch.setattr(lifecycle, name, recorded(name))
    rng = random.Random(f"{SEED}-{size}")  # noqa: S311 (a test walk, not a secret)
    pressed = 0

    async def script(pilot):
        nonlocal pressed
        app = pilot.app
        await runs_loaded(pilot)
        for screen_name, open_screen in _openers(app).items():
            while len(app.screen_stack) > 2:  # back to the runs screen (the stack's first is the default)
                app.pop_screen()
                await pilot.pause()
            open_screen()
            await pilot.pause()
            for _ in range(PRESSES):
                key = rng.choice(KEYS)
                if key == "y" and getattr(app.screen, "question", "") == QUIT:
                    key = "escape"  # every other yes is pressed; quitting would end the walk early
                await pilot.press(key)
                pressed += 1
                if not app.is_running:
                    return
            assert app.return_code in (None, 0), f"{screen_name}: the app died"

    app = make_app()
    drive(app, script, size=size)
    assert app.return_code in (None, 0) and pressed == PRESSES * len(_openers(app)), pressed
    print(size, pressed, "keys;", len(calls), "lifecycle calls recorded:", sorted(set(n for n, _ in calls)))
