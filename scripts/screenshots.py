"""Regenerates the README screenshots (docs/img/*.png) from the fixture runs.

Each screen is driven headless at a fixed size over a copy of tests/fixtures/runs, exported as
SVG by Textual, and rasterised with cairosvg. Textual's SVG asks for "Fira Code"; it is swapped
for DejaVu Sans Mono, and text runs of braille plot dots for DejaVu Sans (which has them).

    .venv/bin/pip install cairosvg      # once
    .venv/bin/python scripts/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aplot_tui.app import AplotApp  # noqa: E402
from aplot_tui.widgets.charts import MetricChart  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "runs"
APLOT = "20260301-101500-rm-aplot-hh-b2c4"
EMD = "20260302-120000-rm-aplot-emd-d4e6"
BT = "20260301-091500-rm-bt-base-a1f3"
PPO = "20260303-100000-ppo-demo-e5f7"
NOW = 1772625600.0  # 2026-03-04 12:00 UTC, so ages read the same every time
SIZE = (160, 46)
BRAILLE = re.compile(r"(<text )([^>]*>[^<]*[\u2800-\u28ff][^<]*</text>)")


def fonts(svg: str) -> str:
    svg = svg.replace('"Fira Code"', '"DejaVu Sans Mono"').replace("Fira Code, monospace", "DejaVu Sans Mono")
    return BRAILLE.sub(r'\1style="font-family:DejaVu Sans" \2', svg)


async def shoot(out: Path) -> list[Path]:
    app = AplotApp(runs_dir=Path("runs"), clock=lambda: NOW)
    written = []

    async def save(name: str) -> None:
        await pilot.pause()
        path = out / f"{name}.png"
        path.write_bytes(cairosvg.svg2png(bytestring=fonts(app.export_screenshot()).encode()))
        written.append(path)

    async def until(condition) -> None:
        for _ in range(500):
            if condition():
                return
            await pilot.pause(0.02)
        raise RuntimeError("the screen did not load")

    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: getattr(app.screen, "loaded", False))
        await save("runs")
        for name, run_id in (("run-rm", APLOT), ("run-ppo", PPO)):
            app.open_run(run_id)
            await until(lambda: getattr(app.screen, "caught_up", False))
            await save(name)
            app.pop_screen()
        app.compare([EMD, APLOT, BT])
        await until(lambda: bool(getattr(app.screen, "runs", None)) and app.screen.query(MetricChart))
        await save("compare")
        await pilot.press("3")
        await save("compare-diff")
        app.pop_screen()
        await pilot.press("n")
        await until(lambda: getattr(app.screen, "cfg", None) is not None)
        await save("new-run")
    return written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(FIXTURES, Path(tmp) / "runs")
        os.chdir(tmp)  # the header shows the store as `runs`
        for path in asyncio.run(shoot(out)):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    try:
        import cairosvg
    except ImportError:
        sys.exit("scripts/screenshots.py needs cairosvg: .venv/bin/pip install cairosvg")
    main()
