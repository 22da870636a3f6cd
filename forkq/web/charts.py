"""Server-rendered SVG charts: pure functions from numbers to markup, styled by forkq.css."""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

from markupsafe import Markup

from ..api import DayStat

WIDTH, HEIGHT = 800, 240
#: room for the y-axis labels on the left and the dates below, in SVG units
LEFT, RIGHT, TOP, BOTTOM = 72, 36, 16, 40
#: dates labelled on the x axis at most
MAX_X_LABELS = 8


def nice_step(maximum: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``ticks`` grid lines."""
    if maximum <= 0:
        return 1.0
    raw = maximum / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def short_number(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:g}"


def history_svg(days: Sequence[DayStat]) -> Markup:
    """Processed (area) and failed (line) per day, with a grid and a tooltip per point."""
    highest = max([d.processed for d in days] + [d.failed for d in days] + [1])
    step = nice_step(highest)
    top = step * math.ceil(highest / step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + (plot_w * index / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="Processed and failed jobs per day">']
    parts += _grid(step, top, y)
    parts += _x_labels(days, x)
    processed = [(x(i), y(d.processed)) for i, d in enumerate(days)]
    failed = [(x(i), y(d.failed)) for i, d in enumerate(days)]
    base = TOP + plot_h
    area = [(processed[0][0], base), *processed, (processed[-1][0], base)]
    parts.append(f'<polygon class="area-processed" points="{_points(area)}"/>')
    parts.append(f'<polyline class="line-processed" points="{_points(processed)}"/>')
    parts.append(f'<polyline class="line-failed" points="{_points(failed)}"/>')
    parts += _dots(days, processed, failed)
    parts.append("</svg>")
    return Markup("".join(parts))


def _points(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def _grid(step: float, top: float, y) -> list[str]:
    lines = []
    for n in range(int(round(top / step)) + 1):
        value = n * step
        lines.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{y(value):.1f}" y2="{y(value):.1f}"/>')
        lines.append(f'<text class="axis" x="{LEFT - 8}" y="{y(value):.1f}" text-anchor="end" '
                     f'dominant-baseline="middle">{short_number(value)}</text>')
    return lines


def _x_labels(days: Sequence[DayStat], x) -> list[str]:
    every = max(1, math.ceil(len(days) / MAX_X_LABELS))
    return [f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f'{escape(d.day[5:])}</text>'
            for i, d in enumerate(days) if (len(days) - 1 - i) % every == 0]


def _dots(days: Sequence[DayStat], processed, failed) -> list[str]:
    dots = []
    for day, (px, py), (fx, fy) in zip(days, processed, failed):
        title = f"{escape(day.day)}: {day.processed:,} processed, {day.failed:,} failed"
        dots.append(f'<g class="point"><title>{title}</title>'
                    f'<rect class="hit" x="{px - 6:.1f}" y="{TOP}" width="12" '
                    f'height="{HEIGHT - TOP - BOTTOM}"/>'
                    f'<circle class="dot-processed" cx="{px:.1f}" cy="{py:.1f}" r="3"/>'
                    f'<circle class="dot-failed" cx="{fx:.1f}" cy="{fy:.1f}" r="2.5"/></g>')
    return dots
