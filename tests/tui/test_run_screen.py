"""The run screen: panels filled from the metrics stream, live following, ETA, stop, resume."""

from __future__ import annotations

import asyncio
import json

from aplot_tui.screens.run import RunScreen
from aplot_tui.widgets.charts import MetricChart
from aplot_tui.widgets.log_pane import LogPane
from aplot_tui.widgets.run_header import RunHeader
from aplot_tui.widgets.samples import SamplesView
from engine.runs import store as mf

from .helpers import APLOT, EMD, FIXTURES, PPO, drive, run_loaded, wait_for


def chart(screen, panel: str) -> MetricChart:
    return screen.query_one(f"#panel-{panel}", MetricChart)


def labels(screen, panel: str) -> list[str]:
    return [line.label for line in chart(screen, panel).lines]


async def open_running(pilot, run_id: str):
    """The run screen of a run a fake trainer holds, once its metrics are in and it shows running."""
    pilot.app.open_run(run_id)
    await run_loaded(pilot)
    screen = pilot.app.screen
    header = screen.query_one(RunHeader)
    await wait_for(pilot, lambda: header.status == "running")
    return screen, header


def test_aplot_run_shows_every_panel_from_the_fixture(make_app):
    async def script(pilot):
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        screen = pilot.app.screen
        assert screen.records_seen == 208  # 200 train lines + 4 evals × (heldout, ood)
        assert labels(screen, "loss") == ["train", "heldout", "ood"]
        assert labels(screen, "accuracy") == ["train", "heldout", "ood"]
        assert len(screen.series["loss"]) == 200 and len(screen.series["eval/ood/accuracy"]) == 4
        assert labels(screen, "margin") == ["mean", "max"]
        hist = chart(screen, "hist")
        assert hist.border_title == "margin vs gap · heldout @ step 200"
        assert len(hist.lines[0].xs) == 64  # the paired margin_hist/gap_hist of the last heldout eval
        assert labels(screen, "lr") == ["lr"]
        header = screen.query_one(RunHeader)
        assert (header.status, header.step, header.total_steps) == ("completed", 200, 200)
        # started 15 s after creation; the last train line is at +20 s + 1.5 s × 200
        assert header.elapsed_s == 305.0
        log = (FIXTURES / APLOT / "train.log").read_text().splitlines()
        assert list(screen.query_one(LogPane).lines) == log

    drive(make_app(), script)


def test_ppo_run_shows_reward_kl_win_rate_with_errors_and_samples(make_app):
    async def script(pilot):
        pilot.app.open_run(PPO)
        await run_loaded(pilot)
        screen = pilot.app.screen
        assert labels(screen, "reward") == ["rm score", "rlhf"]  # gold (0…1) has its own axis
        assert labels(screen, "gold") == ["gold"]
        assert labels(screen, "clip") == ["policy", "value"]
        win = chart(screen, "win").lines[0]
        assert win.kind == "error" and win.xs == (10, 20, 30, 40, 50, 60)
        assert win.ys[-1] == 0.8387 and win.yerr[-1] == 0.023
        samples = screen.query_one(SamplesView)
        assert samples.step == 60 and len(samples.samples) == 4
        assert samples.samples[0]["prompt"] == "Write a short note about the sea."

    drive(make_app(), script)


def _train_line(step: int, t: float) -> str:
    return json.dumps({"time": t, "step": step, "split": "train", "data": {"loss": 0.4, "accuracy": 0.8}}) + "\n"


def test_follows_a_live_run_within_a_second_with_eta(make_app, store, fake_training):
    fake_training(store, EMD)
    paths = mf.RunPaths(store / EMD)
    last_time = json.loads(paths.metrics.read_text().splitlines()[-1])["time"]

    async def script(pilot):
        screen, header = await open_running(pilot, EMD)
        assert len(screen.series["loss"]) == 120
        with open(paths.metrics, "a") as fh:  # a torn line is held back until its newline arrives
            fh.write(_train_line(121, last_time + 1.5) + _train_line(122, last_time + 3.0)[:20])
            fh.flush()
            # the complete line arrives with the next poll (50 ms here); 5 s is a generous bound that
            # a machine shared with other jobs still meets (the timing itself is bench/tui_bench.py's)
            await wait_for(pilot, lambda: len(screen.series["loss"]) == 121, timeout=5.0, what="step 121")
            fh.write(_train_line(122, last_time + 3.0)[20:])
        with open(paths.log, "a") as fh:
            fh.write("step  122 loss=0.4000\n")
        await wait_for(pilot, lambda: len(screen.series["loss"]) == 122, timeout=5.0)
        await wait_for(pilot, lambda: screen.query_one(LogPane).lines[-1] == "step  122 loss=0.4000", timeout=5.0)
        # 1.5 s per step in the fixture and in the new lines: 78 steps left take 117 s
        assert header.step == 122 and round(header.steps_per_s, 4) == 0.6667
        assert "ETA 1m 57s" in str(header.render())

    drive(make_app(), script)


def test_stop_from_run_screen_and_resume_refused_without_checkpoint(make_app, store, fake_training):
    proc = fake_training(store, EMD)

    async def script(pilot):
        screen, header = await open_running(pilot, EMD)
        await pilot.press("r")  # running: nothing to resume
        assert pilot.app.screen is screen
        await pilot.press("s", "n")  # asked, declined
        assert proc.poll() is None
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: header.status == "stopped", timeout=15, what="stopped")
        assert proc.poll() is not None
        await pilot.press("r")  # stopped, but the fixture run has no checkpoint
        assert pilot.app.screen is screen
        assert any("no complete checkpoint" in n.message for n in pilot.app._notifications)

    drive(make_app(), script)


def test_q_goes_back_to_the_runs_screen(make_app):
    async def script(pilot):
        await pilot.pause()
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        await pilot.press("q")
        assert type(pilot.app.screen).__name__ == "RunsScreen"
        assert not any(isinstance(s, RunScreen) for s in pilot.app.screen_stack)

    drive(make_app(), script)


def test_moving_focus_between_panels_keeps_the_footer_and_a_new_screen_rebuilds_it(make_app):
    """Focus moves between panels add no keys, so the footer's key widgets stay (rebuilding them was
    most of a focus repaint); a screen with other keys shows its own."""
    from textual.widgets._footer import FooterKey

    from aplot_tui.widgets.footer import KeyFooter

    def keys(screen) -> list:
        return list(screen.query_one(KeyFooter).query(FooterKey))

    async def script(pilot):
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        screen = pilot.app.screen
        before = keys(screen)
        assert "Smooth" in [k.description for k in before]
        focused = []
        for _ in range(3):
            await pilot.press("tab")
            await pilot.pause()
            focused.append(pilot.app.focused)
        assert len(set(focused)) == 3  # the focus did move
        assert [id(k) for k in keys(screen)] == [id(k) for k in before]  # the very same widgets
        await pilot.press("q")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, RunScreen))
        await pilot.pause()
        assert "Smooth" not in [k.description for k in keys(pilot.app.screen)]

    drive(make_app(), script)


async def painted(screen) -> None:
    """Returns once the screen's pending repaints have gone out."""
    done = asyncio.get_running_loop().create_future()
    screen.call_after_refresh(lambda: done.set_result(None))
    await done


def _rows_sent(app) -> set[int]:
    """The screen rows Textual sends to the terminal from now on (headless, it sends none; this
    records what it would)."""
    from textual._compositor import ChopsUpdate, LayoutUpdate

    rows: set[int] = set()
    display = app._display

    def spy(screen, update):
        if isinstance(update, LayoutUpdate):  # a full repaint: every row
            rows.update(range(update.region.y, update.region.bottom))
        elif isinstance(update, ChopsUpdate):
            rows.update(y for y, _x0, _x1 in update.spans)
        return display(screen, update)

    app._display = spy
    return rows


def test_a_finished_run_on_screen_sends_nothing_to_the_terminal(make_app):
    """Nothing changes, so nothing is drawn: not the runs list polling the store behind the run
    screen (Textual repaints the top screen for a screen under it), not a panel title set again."""

    async def script(pilot):
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        await painted(pilot.app.screen)  # the panels' first drawing is out
        rows = _rows_sent(pilot.app)
        await pilot.pause(0.5)  # five polls of the store (poll_s 0.1), ten rounds of the follower
        assert rows == set()

    drive(make_app(), script)


def test_a_focus_move_repaints_only_the_two_panels_it_touches(make_app):
    """Textual repaints the whole screen on a focus move; the chart screens opt out (every plot on
    the screen was composited again, ~40 ms with six), so only the rows of the panel that focus
    leaves and the one it enters are sent to the terminal."""
    from aplot_tui.widgets.charts import MetricChart

    async def script(pilot):
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        charts = list(pilot.app.screen.query(MetricChart))
        charts[0].focus()
        await pilot.pause()
        await painted(pilot.app.screen)
        rows = _rows_sent(pilot.app)
        await pilot.press("tab")
        await pilot.pause()
        assert pilot.app.focused is charts[1] and charts[0].region.y == charts[1].region.y  # side by side
        assert rows == set(range(charts[0].region.y, charts[0].region.bottom))

    drive(make_app(), script)


def test_d_on_a_ppo_run_opens_no_diagnostics_that_never_come(make_app):
    """A PPO run writes no bias checks: `d` shows disabled and opens nothing."""
    async def script(pilot):
        pilot.app.open_run(PPO)
        await run_loaded(pilot)
        screen = pilot.app.screen
        await pilot.press("d")
        await pilot.pause()
        assert pilot.app.screen is screen
        assert screen.check_action("diagnostics", ()) is None
        pilot.app.screen.dismiss()
        await pilot.pause()
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        assert pilot.app.screen.check_action("diagnostics", ()) is True

    drive(make_app(), script)


def test_the_log_pane_leaves_out_progress_bars_and_says_a_crash(make_app, store, fake_training):
    """A live run: a shard-writing bar adds nothing; a crash, which the trainer cannot write to its
    log (it writes each eval's line and a clean end itself), adds one [aplot] line."""
    proc = fake_training(store, EMD)
    paths = mf.RunPaths(store / EMD)

    async def script(pilot):
        screen, header = await open_running(pilot, EMD)
        log = screen.query_one(LogPane)
        with open(paths.log, "a") as fh:
            fh.write("Writing model shards: 100%|##########| 1/1 [00:00<00:00,  9.12it/s]\nplain line\n")
        await wait_for(pilot, lambda: log.lines[-1] == "plain line", what="the plain line")
        assert not any("Writing model shards" in line for line in log.lines)
        proc.kill()
        proc.wait()
        await wait_for(pilot, lambda: log.lines[-1].startswith("[aplot] crashed"), timeout=10, what="crash line")
        assert log.lines[-1] == f"[aplot] crashed at step {header.step}"

    drive(make_app(), script)


def test_f_on_the_log_pane_gives_the_log_the_screen_without_hatching(make_app):
    async def script(pilot):
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        screen = pilot.app.screen
        screen.query_one(LogPane).focus()
        await pilot.press("f")
        assert screen.maximized is None and screen.has_class("log-only")
        await pilot.press("f")
        assert not screen.has_class("log-only")

    drive(make_app(), script, size=(80, 24))
