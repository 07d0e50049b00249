"""The chart of a run as SVG, written as plain text (no plotting library): the same three panels
as the PNG (:mod:`bench.plot`) - ratios to the baselines, throughput side by side, small-request
latency - as horizontal bars with their values printed."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from .metrics import HIGHER, Results
from .plot import BAD, BASE, GOOD, OURS, throughput_groups

WIDTH = 1100
LABEL_W = 430  # left column: the bar labels
PLOT_W = WIDTH - LABEL_W - 110  # bars; the rest is room for the value printed after a bar
ROW = 22
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"


class _Canvas:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.y = 0.0

    def text(self, x: float, y: float, s: str, size: int = 11, anchor: str = "start", weight: str = "normal") -> None:
        self.parts.append(f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
                          f"font-weight='{weight}' {FONT}>{escape(s)}</text>")

    def rect(self, x: float, y: float, w: float, h: float, color: str, opacity: float = 1.0) -> None:
        self.parts.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{max(w, 0.5):.1f}' height='{h:.1f}' "
                          f"fill='{color}' fill-opacity='{opacity}'/>")

    def line(self, x1: float, y1: float, x2: float, y2: float, dash: bool = False) -> None:
        style = " stroke-dasharray='3,3'" if dash else ""
        self.parts.append(f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='black' "
                          f"stroke-width='1'{style}/>")

    def title(self, s: str) -> None:
        self.y += 28
        self.text(WIDTH / 2, self.y, s, 13, "middle", "bold")
        self.y += 12


def _log_x(lo: float, hi: float):
    a, b = math.log10(lo), math.log10(hi)
    return lambda v: LABEL_W + (math.log10(max(v, lo)) - a) / (b - a) * PLOT_W


def _ratios(c: _Canvas, ratios) -> None:
    c.title("Ratios to baselines run side by side (green: meets target, red: misses it, blue: no target)")
    values = [mv.value for mv in ratios] + [mv.spec.target for mv in ratios if mv.spec.target]
    x = _log_x(min(0.5, min(values) / 1.6), max(2.0, max(values) * 2.5))
    top = c.y
    for mv in ratios:
        y = c.y
        color = {True: GOOD, False: BAD, None: OURS}[mv.spec.meets(mv.value)]
        x0, x1 = sorted((x(1.0), x(mv.value)))
        c.rect(x0, y + 3, x1 - x0, ROW - 6, color)
        if mv.spec.target is not None:
            c.line(x(mv.spec.target), y + 1, x(mv.spec.target), y + ROW - 1, dash=True)
        arrow = "↑" if mv.spec.better == HIGHER else "↓"
        c.text(LABEL_W - 8, y + ROW - 7, f"{mv.name} ({arrow} better)", 11, "end")
        c.text(max(x(mv.value), x(1.0)) + 4, y + ROW - 7, f"{mv.value:.2f}x", 10)
        c.y += ROW
    c.line(x(1.0), top, x(1.0), c.y)
    c.text(LABEL_W + PLOT_W / 2, c.y + 16, "MinIODB / baseline (log scale, bars grow from parity 1.0; "
           "dotted: target)", 10, "middle")
    c.y += 22


def _throughput(c: _Canvas, groups) -> None:
    c.title("Throughput, side by side (rows/s, log scale; blue: MinIODB, grey: baseline)")
    values = [v for _, ours, bases in groups for v in [ours, *(b for _, b in bases[:1])] if v]
    x = _log_x(min(values) / 3, max(values) * 1.5)
    for title, ours, bases in groups:
        c.text(LABEL_W - 8, c.y + ROW - 7, title, 11, "end")
        for value, color, label in ((ours, OURS, "MinIODB"), *((v, BASE, b) for b, v in bases[:1])):
            c.rect(LABEL_W, c.y + 3, x(value) - LABEL_W, ROW - 6, color)
            c.text(x(value) + 4, c.y + ROW - 7, f"{value:,.0f} ({label})", 9)
            c.y += ROW
        c.y += 4


def _latency(c: _Canvas, ms) -> None:
    c.title("Small-request latency (ms; solid: p50, light: p99)")
    hi = max(m.latency(99) * 1000 for m in ms) * 1.1
    for m in ms:
        p50, p99 = m.latency(50) * 1000, m.latency(99) * 1000
        color = BASE if m.baseline else OURS
        c.text(LABEL_W - 8, c.y + ROW - 7, f"{m.title.split(' (')[0]}: {m.label}", 10, "end")
        c.rect(LABEL_W, c.y + 3, p50 / hi * PLOT_W, (ROW - 6) / 2, color)
        c.rect(LABEL_W, c.y + 3 + (ROW - 6) / 2, p99 / hi * PLOT_W, (ROW - 6) / 2, color, 0.45)
        c.text(LABEL_W + p99 / hi * PLOT_W + 4, c.y + ROW - 7, f"p50 {p50:.2f} · p99 {p99:.2f}", 9)
        c.y += ROW


def svg(results: Results) -> str:
    c = _Canvas()
    machine = results.meta.get("machine", {})
    c.y = 20
    c.text(WIDTH / 2, c.y, f"MinIODB bench · {results.meta.get('command', '')}", 12, "middle")
    c.y += 16
    c.text(WIDTH / 2, c.y, f"{machine.get('cpu', '')} · {machine.get('logical_cores', '?')} cores · "
           f"{machine.get('ram_gib', '?')} GiB · {results.meta.get('started_at', '')} UTC", 10, "middle")
    ratios = [mv for mv in results.ordered_metrics() if mv.spec.is_ratio and mv.value]
    groups = throughput_groups(results)
    latency = [m for m in results.measurements if m.latencies and m.latency(99)]
    if ratios:
        _ratios(c, ratios)
    if groups:
        _throughput(c, groups)
    if latency:
        _latency(c, latency)
    if not (ratios or groups or latency):
        c.title("nothing measured")
    height = c.y + 20
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0f}' "
            f"viewBox='0 0 {WIDTH} {height:.0f}'>\n<rect width='100%' height='100%' fill='white'/>\n"
            + "\n".join(c.parts) + "\n</svg>\n")


def write_svg(results: Results, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(svg(results), encoding="utf-8")
