"""Snapshots of the diagnostics screen at the smallest and the largest supported terminal: the
length-bias table keeps its rows and the hardest pairs fit below it, from 80×24 to 250×70."""

from __future__ import annotations

import pytest

from engine.analysis import bias_checks as D
from engine.metrics import MetricsWriter
from engine.runs import store as mf

from .helpers import wait_for

RUN = "20260305-100000-rm-aplot-diag-0001"
SETS = {"heldout": 0.0, "ood": 0.7, "hh": -0.4}  # a shift per set, so the rows differ


def _diag_run(store) -> None:
    """A finished run with diagnostics for three eval sets and twelve hard pairs each (fixed numbers)."""
    paths = mf.run_paths(store, RUN)
    mf.create(paths, name="diag", kind="rm", config={"loss": {"type": "aplot"}})
    mf.update(paths, status="completed", resolved={"total_steps": 40})
    n = 24
    with MetricsWriter(paths.metrics) as w:
        for step in range(1, 41):
            w.write(step, "train", {"loss": 0.7 - step / 100, "accuracy": 0.5 + step / 100})
        for name, shift in SETS.items():
            r_c = [((i * 7) % 11) / 5 + shift for i in range(n)]
            r_r = [((i * 5) % 13) / 6 for i in range(n)]
            len_c = [20 + (i * 17) % 90 for i in range(n)]
            len_r = [25 + (i * 29) % 80 for i in range(n)]
            diag = D.diagnostics(r_c, r_r, len_c, len_r)
            acc = sum(c > r for c, r in zip(r_c, r_r, strict=True)) / n
            w.write(40, f"eval/{name}", {"accuracy": acc, **diag})
            pairs = [{"prompt": f"{name} prompt {i}: which answer is better?",
                      "chosen": f"chosen answer {i} " + "with more words " * (i % 4),
                      "rejected": f"rejected answer {i}"} for i in range(n)]
            D.append_hard_pairs(paths.hard_pairs, 40, name, D.hard_pair_records(pairs, r_c, r_r, k=12))


def _opened(pilot_app_store):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.open_run(RUN)
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "caught_up", False))
        await pilot.press("d")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "DiagnosticsScreen")
        panel = pilot.app.screen.query_one("DiagnosticsPanel")
        await wait_for(pilot, lambda: len(panel.evals) == len(SETS) and len(panel.hard_pairs) == len(SETS))
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (250, 70)])
def test_diagnostics_screen(make_app, store, snap_compare, size):
    _diag_run(store)
    assert snap_compare(make_app(), terminal_size=size, run_before=_opened(store))
