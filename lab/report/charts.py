"""Inline SVG charts for the auditor report: no script, no external resource, no ``xmlns`` URL.

HTML5 parses an ``<svg>`` element inline without a namespace declaration, so the report carries no
URL at all. Every text drawn is escaped; every number is formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    data = sorted(values)
    pos = (len(data) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return data[low] + (data[high] - data[low]) * (pos - low)


@dataclass(frozen=True)
class TimingStats:
    """Summary of a timing sample in milliseconds."""

    count: int
    minimum: float
    median: float
    p95: float
    maximum: float

    @classmethod
    def of(cls, values: Sequence[float]) -> TimingStats | None:
        if not values:
            return None
        return cls(len(values), min(values), percentile(values, 0.5), percentile(values, 0.95), max(values))


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"


def histogram_svg(values: Sequence[float], *, title: str, unit: str = "ms", bins: int = 30,
                  width: int = 720, height: int = 240) -> str:
    """A histogram of ``values`` with the median and the 95th percentile marked."""
    stats = TimingStats.of(values)
    if stats is None:
        return f'<p class="muted">{escape(title)}: no values recorded.</p>'
    left, right, top, bottom = 48, 16, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = stats.minimum, stats.maximum
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / span * bins), bins - 1)] += 1
    peak = max(counts)
    bar_w = plot_w / bins
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 6}" y="{top + 4}" class="tick" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" class="tick" text-anchor="end">0</text>',
    ]
    for i, c in enumerate(counts):
        if not c:
            continue
        h = plot_h * c / peak
        parts.append(
            f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}" class="bar"><title>{c} in [{_fmt(lo + i * span / bins)}, '
            f"{_fmt(lo + (i + 1) * span / bins)}) {escape(unit)}</title></rect>"
        )
    for label, v, cls in (("median", stats.median, "median"), ("p95", stats.p95, "p95")):
        x = left + plot_w * (v - lo) / span
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" class="{cls}"/>')
        anchor = "end" if x > left + plot_w * 0.8 else "start"
        dx = -4 if anchor == "end" else 4
        y = top + 12 if cls == "median" else top + 26
        parts.append(f'<text x="{x + dx:.1f}" y="{y}" class="tick {cls}-label" text-anchor="{anchor}">'
                     f"{label} {_fmt(v)} {escape(unit)}</text>")
    parts += [
        f'<text x="{left}" y="{height - 8}" class="tick">{_fmt(lo)} {escape(unit)}</text>',
        f'<text x="{left + plot_w}" y="{height - 8}" class="tick" text-anchor="end">{_fmt(hi)} {escape(unit)}</text>',
        "</svg>",
    ]
    return "".join(parts)


def trend_svg(labels: Sequence[str], pass_rates: Sequence[float], durations_s: Sequence[float], *,
              width: int = 720, height: int = 240) -> str:
    """Pass rate (0..1, bars) and duration (line, own scale) per run, oldest first."""
    if not labels:
        return '<p class="muted">No runs to compare.</p>'
    left, right, top, bottom = 48, 56, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)
    step = plot_w / n
    longest = max(durations_s) or 1.0
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        "<title>pass rate and duration per run</title>",
        f'<text x="{left}" y="16" class="chart-title">pass rate (bars, left) and duration (line, right)</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 6}" y="{top + 4}" class="tick" text-anchor="end">100%</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" class="tick" text-anchor="end">0%</text>',
        f'<text x="{left + plot_w + 6}" y="{top + 4}" class="tick">{_fmt(longest)} s</text>',
    ]
    points = []
    for i, (label, rate, dur) in enumerate(zip(labels, pass_rates, durations_s, strict=True)):
        x = left + i * step
        h = plot_h * max(0.0, min(rate, 1.0))
        parts.append(f'<rect x="{x + step * 0.15:.1f}" y="{top + plot_h - h:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{h:.1f}" class="bar"><title>{escape(label)}: {rate * 100:.1f}% passed, '
                     f"{_fmt(dur)} s</title></rect>")
        points.append(f"{x + step / 2:.1f},{top + plot_h - plot_h * dur / longest:.1f}")
        if n <= 12:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{top + plot_h + 14}" class="tick" '
                         f'text-anchor="middle">{escape(label[-16:])}</text>')
    parts.append(f'<polyline points="{" ".join(points)}" class="line"/>')
    parts.append("</svg>")
    return "".join(parts)
