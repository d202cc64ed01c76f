"""The gold-free over-optimisation warning on recorded streams: it fires where the proxy and the
ensemble's disagreement rise together, and stays quiet where they do not."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from aplot_tui.views import health
from engine import metrics as M
from engine.analysis import overopt
from engine.runs import store as mf

SMALL = overopt.Rule(window=2, ratio=1.5, patience=2)
STEPS = list(range(1, 9))
RISING = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
DRIFTING = [1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_fires_by_hand_where_proxy_and_disagreement_rise_together():
    # step 4: D_now = D_before = 1 (not rising). Step 5: D_now 1.5 is not > 1.5 · baseline 1.
    # Step 6: D_now 2.5 > D_before 1, > 1.5 · 1; proxy 4.5 > 2.5: holds (1 in a row).
    # Step 7: D_now 3.5 > 1.5, > 1.5 · mean(1, 1, 1, 1, 2) = 1.8; proxy 5.5 > 3.5: holds twice, fires.
    alarm = overopt.first_alarm(STEPS, RISING, DRIFTING, SMALL)
    assert alarm == overopt.Alarm(step=7, proxy_before=3.5, proxy_now=5.5, disagreement_now=3.5, baseline=1.2)
    assert alarm.line().startswith("[aplot] over-optimisation warning at step 7: the proxy rises (3.5 → 5.5)")
    assert "2.9× its running baseline" in alarm.line()


def test_patience_one_fires_a_point_earlier():
    rule = overopt.Rule(window=2, ratio=1.5, patience=1)
    assert overopt.first_alarm(STEPS, RISING, DRIFTING, rule).step == 6


@pytest.mark.parametrize("proxy,disagreement", [
    (RISING[::-1], DRIFTING),  # disagreement rises, the proxy falls
    (RISING, [1.0, 1.1, 0.9, 1.0, 1.1, 0.9, 1.0, 1.1]),  # the proxy rises, the members keep agreeing
    (RISING, [5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0])],  # they agree more and more
    ids=["proxy-falls", "disagreement-flat", "disagreement-falls"])
def test_quiet_where_they_do_not_rise_together(proxy, disagreement):
    assert overopt.first_alarm(STEPS, proxy, disagreement, SMALL) is None


def recorded(n: int, knee: int | None) -> tuple[list[int], list[float], list[float]]:
    """A GRPO-like stream: the proxy climbs with a wobble; the disagreement wobbles at 0.2, and after
    `knee` grows 15 % of that a point."""
    steps = list(range(1, n + 1))
    proxy = [0.05 * i + 0.03 * math.sin(i) for i in steps]
    spread = [0.2 * (1 + 0.05 * math.sin(3 * i)) * (1 + 0.15 * max(0, i - knee) if knee else 1) for i in steps]
    return steps, proxy, spread


def test_the_default_rule_fires_some_points_after_the_knee_and_not_before():
    alarm = overopt.first_alarm(*recorded(40, knee=20))
    assert alarm is not None and 20 < alarm.step <= 30, alarm
    assert overopt.first_alarm(*recorded(40, knee=None)) is None


def test_the_warning_fires_once_and_survives_a_resume():
    watch = overopt.Watch(SMALL)
    fired = [watch.add(s, p, d) for s, p, d in zip(STEPS[:6], RISING, DRIFTING, strict=False)]
    assert fired == [None] * 6 and watch.streak == 1
    resumed = overopt.Watch(SMALL)
    resumed.load_state_dict(watch.state_dict())  # the checkpoint's copy: the streak comes back
    assert resumed.streak == 1
    assert resumed.add(7, RISING[6], DRIFTING[6]).step == 7
    assert resumed.add(8, RISING[7], DRIFTING[7]) is None  # said once
    assert resumed.fired.step == 7


def test_non_finite_points_are_left_out():
    proxy = [*RISING[:4], math.nan, *RISING[4:]]
    spread = [*DRIFTING[:4], 9.0, *DRIFTING[4:]]
    assert overopt.first_alarm([*STEPS[:4], 99, *STEPS[4:]], proxy, spread, SMALL).step == 7


def test_the_health_flag_reads_the_stream_series():
    steps, proxy, spread = recorded(40, knee=20)
    want = overopt.first_alarm(steps, proxy, spread)
    series = {M.SCORES: (steps, proxy), M.ENSEMBLE_STD: (steps, spread)}
    assert health.series_flags(series) == [f"over-optimisation warning from step {want.step}: {want.text()}"]
    assert health.series_flags({M.SCORES: (steps, proxy)}) == []  # one RM: no disagreement, no flag
    calm = recorded(40, knee=None)
    assert health.overopt_flags(calm[0], calm[1], calm[0], calm[2]) == []


def ppo_run(root, name: str, knee: int | None) -> str:
    """A finished PPO run folder whose stream is `recorded(40, knee)`, as an ensemble run writes it."""
    paths = mf.run_paths(root, mf.new_run_id(name, "ppo", "grpo"))
    mf.create(paths, name=name, kind="ppo", config={"kind": "ppo", "ppo": {"advantage": "grpo"}})
    with M.MetricsWriter(paths.metrics) as out:
        for step, proxy, spread in zip(*recorded(40, knee), strict=True):
            out.write(step, M.TRAIN, {M.SCORES: proxy, M.ENSEMBLE_STD: spread, M.KL: 0.1 * step})
    mf.update(paths, status="completed", exit_code=0)
    return paths.id


def test_aplot_show_and_compare_carry_the_flag(runs_dir):
    from aplot_tui.cli import app

    hacked, calm = ppo_run(runs_dir, "hacked", knee=20), ppo_run(runs_dir, "calm", knee=None)
    alarm = overopt.first_alarm(*recorded(40, knee=20))
    flag = f"over-optimisation warning from step {alarm.step}: {alarm.text()}"
    shown = CliRunner().invoke(app, ["show", hacked])
    assert shown.exit_code == 0, shown.output
    assert f"health: {flag}" in shown.output
    assert "over-optimisation" not in CliRunner().invoke(app, ["show", calm]).output
    compared = CliRunner().invoke(app, ["compare", hacked, calm])
    assert compared.exit_code == 0, compared.output
    assert [line.strip() for line in compared.output.splitlines() if "over-optimisation" in line] == [f"⚠ A {flag}"]


def test_a_runs_own_rule_is_the_one_read_back():
    config = {"ppo": {"ensemble": {"warn_window": 2, "warn_ratio": 9.0, "warn_patience": 1}}}
    assert overopt.rule_of(config) == overopt.Rule(window=2, ratio=9.0, patience=1)
    assert overopt.rule_of({}) == overopt.RULE
    steps, proxy, spread = recorded(40, knee=20)
    assert health.overopt_flags(steps, proxy, steps, spread) != []
    assert health.overopt_flags(steps, proxy, steps, spread, config) == []  # 9x its baseline: never here
