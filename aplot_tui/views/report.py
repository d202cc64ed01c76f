"""Headless run comparison: the summary table (CSV/Markdown), the config diff, and one chart
per metric with every run's curve overlaid (SVG, or PNG through cairosvg).

`aplot compare --plot` and the compare screen's export both come here, so a chart in a paper
and the one on screen are the same numbers. No Textual and no torch: this runs in scripts.

A metric is named by one key: the bare name for the train split (`loss`, `objective/kl`) and
`<split>/<name>` otherwise (`eval/heldout/accuracy`, `eval/win/win_rate`), as W&B would.
"""

from __future__ import annotations

import csv
import io
import math
from html import escape
from pathlib import Path

from aplot_tui.views import significance
from aplot_tui.views.run_data import RunData, default_metrics, expand, load_run, table_rows
from aplot_tui.views.series import downsample, nice_ticks
from engine.metrics import higher_is_better, metric_key, split_key  # noqa: F401 - the report's vocabulary

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")


# --------------------------------------------------------------------------- table files


def format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def table_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def table_text(rows: list[dict]) -> str:
    """Metrics as rows and runs as columns (A, B, … named in a legend above), as `dvc exp show` can:
    30+ metrics stay readable in 100 columns. Rows with no value in any run are left out (PPO metrics
    among RMs). CSV and Markdown stay wide, one row per run, for machines."""
    if not rows:
        return ""
    letters = [chr(ord("A") + i) if i < 26 else f"R{i}" for i in range(len(rows))]
    legend = [f"{c}  {r['id']}" + (f"  ({r['name']})" if r.get("name") and r["name"] != r["id"] else "")
              for c, r in zip(letters, rows, strict=True)]
    keys = [k for k in rows[0] if k not in ("id", "name") and any(r[k] not in (None, "") for r in rows)]
    cells = [["", *letters]] + [[k, *(format_cell(r[k]) or "—" for r in rows)] for k in keys]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    body = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True)))
            .rstrip() for line in cells]
    return "\n".join(legend) + "\n\n" + "\n".join(body) + "\n"


def format_table(rows: list[dict], fmt: str = "text") -> str:
    """The summary table as `text`, `csv` or `md`."""
    writers = {"text": table_text, "csv": table_csv, "md": table_markdown}
    if fmt not in writers:
        raise ValueError(f"table format must be text | csv | md, got {fmt!r}")
    return writers[fmt](rows)


def table_with_stats(runs: list[RunData], fmt: str, metrics: list[str] | None = None) -> str:
    """The summary table with the significance of its differences: CSV gains per-run columns (the
    difference to the first run, its interval, McNemar p); Markdown a second table with verdicts."""
    rows = table_rows(runs, metrics)
    analysis = significance.analyse(runs)
    letters = {r.id: significance.letter(i) for i, r in enumerate(runs)}
    if fmt == "csv":
        extra = significance.csv_columns(analysis, runs)
        keys = list(dict.fromkeys(k for cells in extra.values() for k in cells))
        return table_csv([{**row, **{k: extra[row["id"]].get(k) for k in keys}} for row in rows])
    legend = "".join(f"- {letters[r.id]}: `{r.id}`\n" for r in runs)
    stats_md = significance.markdown(analysis, letters)
    return table_markdown(rows) + ("\n" + legend + "\n" + stats_md if stats_md else "")


# --------------------------------------------------------------------------- charts


def _chart(run_lines: list[tuple[str, str, list[int], list[float]]], title: str, x0: float, y0: float,
           w: float, h: float) -> list[str]:
    """One chart's SVG elements inside the box (x0, y0, w, h)."""
    left, right, top, bottom = 58, 12, 26, 30
    pw, ph = w - left - right, h - top - bottom
    xs_all = [x for _, _, xs, _ in run_lines for x in xs]
    ys_all = [y for _, _, _, ys in run_lines for y in ys if math.isfinite(y)]
    out = [f'<text x="{x0 + w / 2:.1f}" y="{y0 + 16:.1f}" class="title">{escape(title)}</text>']
    if not ys_all:
        out.append(f'<text x="{x0 + w / 2:.1f}" y="{y0 + h / 2:.1f}" class="tick">no data</text>')
        return out
    yt = nice_ticks(min(ys_all), max(ys_all))
    xt = nice_ticks(min(xs_all), max(xs_all))
    ylo, yhi, xlo, xhi = yt[0], yt[-1], xt[0], xt[-1]

    def px(x: float) -> float:
        return x0 + left + (x - xlo) / ((xhi - xlo) or 1) * pw

    def py(y: float) -> float:
        return y0 + top + ph - (y - ylo) / ((yhi - ylo) or 1) * ph

    out.append(f'<rect x="{x0 + left}" y="{y0 + top}" width="{pw:.1f}" height="{ph:.1f}" class="frame"/>')
    for t in yt:
        out.append(f'<line x1="{x0 + left}" x2="{x0 + left + pw:.1f}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>')
        out.append(f'<text x="{x0 + left - 5}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">{t:.4g}</text>')
    for t in xt:
        out.append(f'<text x="{px(t):.1f}" y="{y0 + top + ph + 16:.1f}" class="tick">{t:.6g}</text>')
    for _label, color, xs, ys in run_lines:
        if not ys:
            continue
        dx, dy = downsample(xs, ys, int(pw))
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(dx, dy, strict=True) if math.isfinite(y))
        if len(dx) == 1:
            out.append(f'<circle cx="{px(dx[0]):.1f}" cy="{py(dy[0]):.1f}" r="2.5" fill="{color}"/>')
        else:
            out.append(f'<polyline points="{pts}" stroke="{color}" class="line"/>')
    return out


def charts_svg(runs: list[RunData], metrics: list[str], columns: int = 2) -> str:
    """Small multiples: one chart per metric, every run's curve in its colour, one legend on top."""
    cw, ch, legend_h = 460, 280, 16 + 18 * math.ceil(len(runs) / columns)
    rows = math.ceil(len(metrics) / columns) if metrics else 1
    width, height = cw * columns, legend_h + ch * rows
    body = []
    for i, run in enumerate(runs):
        lx, ly = 16 + (i % columns) * (width - 32) / columns, 22 + 18 * (i // columns)
        body.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="14" height="4" fill="{COLORS[i % len(COLORS)]}"/>')
        body.append(f'<text x="{lx + 20:.1f}" y="{ly - 3}" class="legend">{escape(run.label)} '
                    f'<tspan class="dim">{escape(run.id)}</tspan></text>')
    for j, key in enumerate(metrics):
        lines = [(run.label, COLORS[i % len(COLORS)], *run.series.get(key, ([], []))) for i, run in enumerate(runs)]
        body += _chart(lines, key, (j % columns) * cw, legend_h + (j // columns) * ch, cw, ch)
    style = ("text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;fill:#222}"
             ".title{font-size:13px;font-weight:bold;text-anchor:middle}"
             ".tick{font-size:10px;fill:#555;text-anchor:middle}.legend{font-size:12px}.dim{fill:#888}"
             ".frame{fill:none;stroke:#999;stroke-width:1}.grid{stroke:#e4e4e4;stroke-width:1}"
             ".line{fill:none;stroke-width:1.6;stroke-linejoin:round}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><style>{style}</style>'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n")


def svg_to_png(svg: str) -> bytes:
    try:
        import cairosvg
    except ImportError:
        raise RuntimeError("PNG export needs cairosvg (pip install cairosvg); .svg works without it") from None
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=2)


def export_compare(run_dirs: list[Path], out: Path, metrics: list[str] | None = None) -> Path:
    """Write the comparison to `out`: charts for .svg/.png, the summary table for .csv/.md."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".svg", ".png", ".csv", ".md"):
        raise ValueError(f"{out}: export to .svg, .png, .csv or .md")
    runs = [load_run(d) for d in run_dirs]
    if suffix in (".csv", ".md"):
        out.write_text(table_with_stats(runs, suffix[1:], expand(metrics, runs) if metrics else None),
                       encoding="utf-8")
        return out
    svg = charts_svg(runs, expand(metrics, runs) if metrics else default_metrics(runs))
    if suffix == ".svg":
        out.write_text(svg, encoding="utf-8")
    else:
        out.write_bytes(svg_to_png(svg))
    return out
