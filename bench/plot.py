"""The chart of a run: ratios to the baselines, throughput side by side, and small-request latency.

:func:`write_plot` picks the format from the file name: ``.svg`` is written as plain text by
:mod:`bench.svg` (no plotting library needed); any other name (``.png``) is drawn by matplotlib
(headless), which comes with the ``miniodb[bench]`` extra."""

from __future__ import annotations

from pathlib import Path

from .metrics import HIGHER, Results

OURS = "#2b6cb0"
BASE = "#a0aec0"
GOOD = "#38a169"
BAD = "#e53e3e"


class PlotUnavailable(RuntimeError):
    """A PNG was asked for and matplotlib is not installed."""


def write_plot(results: Results, path: str | Path) -> None:
    if str(path).lower().endswith(".svg"):
        from .svg import write_svg

        write_svg(results, path)
    else:
        write_png(results, path)


def write_png(results: Results, path: str | Path) -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotUnavailable(f"a PNG chart needs matplotlib ({exc}): pip install 'miniodb[bench]', "
                              "or give --plot a .svg file name (written without matplotlib)") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = [mv for mv in results.ordered_metrics() if mv.spec.is_ratio and mv.value is not None]
    groups = throughput_groups(results)
    latency = [m for m in results.measurements if m.latencies]
    panels = [p for p in (ratios, groups, latency) if p] or [[]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 + 0.45 * sum(len(p) for p in panels)),
                             squeeze=False)
    axes = [a[0] for a in axes]
    i = 0
    if ratios:
        _ratios(axes[i], ratios)
        i += 1
    if groups:
        _throughput(axes[i], groups)
        i += 1
    if latency:
        _latency(axes[i], latency)
    machine = results.meta.get("machine", {})
    fig.suptitle(f"MinIODB bench · {results.meta.get('command', '')}\n"
                 f"{machine.get('cpu', '')} · {machine.get('logical_cores', '?')} cores · "
                 f"{machine.get('ram_gib', '?')} GiB · {results.meta.get('started_at', '')} UTC", fontsize=9)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)


def _ratios(ax, ratios) -> None:
    names = [f"{mv.name} ({'↑' if mv.spec.better == HIGHER else '↓'} better)" for mv in ratios]
    values = [mv.value for mv in ratios]
    colors = [{True: GOOD, False: BAD, None: OURS}[mv.spec.meets(mv.value)] for mv in ratios]
    y = range(len(ratios))
    # bars grow from parity (1.0) on a log axis: a 0.5x and a 2x bar are equally long
    ax.barh(list(y), [v - 1.0 for v in values], left=1.0, color=colors)
    ax.set_xscale("log")
    lo = min([*values, *(mv.spec.target for mv in ratios if mv.spec.target)], default=1.0)
    hi = max([*values, *(mv.spec.target for mv in ratios if mv.spec.target)], default=1.0)
    ax.set_xlim(min(0.5, lo / 1.6), max(2.0, hi * 2.5))
    ax.axvline(1.0, color="black", linewidth=0.8)
    for yi, mv in zip(y, ratios, strict=True):
        if mv.spec.target is not None:
            ax.plot([mv.spec.target, mv.spec.target], [yi - 0.4, yi + 0.4], color="black", linestyle=":")
        left = mv.value < 1.0
        ax.text(mv.value, yi, f"{mv.value:.2f}x " if left else f" {mv.value:.2f}x", va="center",
                ha="right" if left else "left", fontsize=8)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("MinIODB / baseline (log scale, bars grow from parity 1.0; dotted: target)")
    ax.set_title("Ratios to baselines run side by side (green: meets target, red: misses it, blue: no target)",
                 fontsize=10)


TRANSFER_WORKLOADS = ("ingest", "ingest_adbc", "wide_ingest", "export", "export_adbc", "rest")


def throughput_groups(results: Results) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """(workload title, MinIODB rows/s, [(baseline label, rows/s)]) for the transfer workloads."""
    out = []
    for m in results.measurements:
        if m.baseline or m.latencies or not m.rows_per_s or m.workload not in TRANSFER_WORKLOADS:
            continue
        bases = [(x.label, x.rows_per_s) for x in results.measurements
                 if x.workload == m.workload and x.baseline and x.rows_per_s]
        out.append((m.title, m.rows_per_s, bases))
    return out


def _throughput(ax, groups) -> None:
    labels, ours, base = [], [], []
    for title, value, bases in groups:
        labels.append(title)
        ours.append(value)
        base.append(bases[0][1] if bases else 0)
    y = list(range(len(labels)))
    h = 0.38
    ax.barh([v - h / 2 for v in y], ours, h, color=OURS, label="MinIODB")
    ax.barh([v + h / 2 for v in y], base, h, color=BASE, label="baseline")
    for yi, v in zip(y, ours, strict=True):
        ax.text(v, yi - h / 2, f" {v:,.0f}", va="center", fontsize=7)
    for yi, v in zip(y, base, strict=True):
        if v:
            ax.text(v, yi + h / 2, f" {v:,.0f}", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.15)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("rows/s (log scale)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Throughput, side by side", fontsize=10)


def _latency(ax, ms) -> None:
    labels = [f"{m.title.split(' (')[0]}: {m.label}" for m in ms]
    p50 = [m.latency(50) * 1000 for m in ms]
    p99 = [m.latency(99) * 1000 for m in ms]
    y = list(range(len(ms)))
    h = 0.38
    colors = [OURS if not m.baseline else BASE for m in ms]
    ax.barh([v - h / 2 for v in y], p50, h, color=colors, label="p50")
    ax.barh([v + h / 2 for v in y], p99, h, color=colors, alpha=0.45, label="p99")
    for yi, a, b in zip(y, p50, p99, strict=True):
        ax.text(a, yi - h / 2, f" {a:.2f}", va="center", fontsize=7)
        ax.text(b, yi + h / 2, f" {b:.2f}", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.margins(x=0.12)
    ax.set_xlabel("milliseconds (solid: p50, light: p99)")
    ax.set_title("Small-request latency", fontsize=10)

