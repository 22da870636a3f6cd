"""Server-rendered SVG charts: pure functions from numbers to markup, styled by forkq.css."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

from markupsafe import Markup

from ..api import DayStat

#: a chart's size, in SVG units (the page scales it)
WIDTH, HEIGHT = 800, 240
#: room for the y-axis labels on the left and the dates below, in SVG units
LEFT, RIGHT, TOP, BOTTOM = 72, 36, 16, 40
#: the plot inside those margins, in SVG units
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
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
    """An axis label: three significant digits and k, M or G."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:g}"


@dataclass(frozen=True)
class YScale:
    """The value axis of a chart: from 0 to ``top``, a grid line every ``step``."""

    step: float
    top: float

    @classmethod
    def up_to(cls, highest: float) -> "YScale":
        step = nice_step(highest)
        return cls(step, step * math.ceil(highest / step))

    def y(self, value: float) -> float:
        """Where ``value`` is drawn, in SVG units from the top."""
        return TOP + PLOT_H * (1 - value / self.top)


@dataclass(frozen=True)
class Point:
    """One x position of a counts chart."""

    #: under the x axis, when there is room
    label: str
    #: the tooltip's first words
    title: str
    processed: int
    failed: int


def history_svg(days: Sequence[DayStat]) -> Markup:
    """Processed (area) and failed (line) per day, with a grid and a tooltip per point."""
    return counts_svg([Point(d.day[5:], d.day, d.processed, d.failed) for d in days],
                      "Processed and failed jobs per day")


def minutes_svg(minutes: Sequence[float], processed: Sequence[int],
                failed: Sequence[int]) -> Markup:
    """Processed and failed per minute (UTC ``HH:MM``)."""
    points = []
    for start, done, failures in zip(minutes, processed, failed):
        at = datetime.datetime.fromtimestamp(start, datetime.timezone.utc)
        points.append(Point(f"{at:%H:%M}", f"{at:%Y-%m-%d %H:%M} UTC", done, failures))
    return counts_svg(points, "Processed and failed jobs per minute")


def counts_svg(points: Sequence[Point], label: str) -> Markup:
    """Processed (area) and failed (line) per point, with a grid and a tooltip per point."""
    scale = YScale.up_to(max([p.processed for p in points] + [p.failed for p in points] + [1]))
    y = scale.y

    def x(index: int) -> float:
        return LEFT + (PLOT_W * index / (len(points) - 1) if len(points) > 1 else PLOT_W / 2)

    parts = [_svg_start(label)]
    parts += _grid(scale)
    parts += _x_labels([p.label for p in points], x)
    processed = [(x(i), y(p.processed)) for i, p in enumerate(points)]
    failed = [(x(i), y(p.failed)) for i, p in enumerate(points)]
    base = TOP + PLOT_H
    area = [(processed[0][0], base), *processed, (processed[-1][0], base)]
    parts.append(f'<polygon class="area-processed" points="{_points(area)}"/>')
    parts.append(f'<polyline class="line-processed" points="{_points(processed)}"/>')
    parts.append(f'<polyline class="line-failed" points="{_points(failed)}"/>')
    parts += _dots(points, processed, failed)
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram_svg(counts: Sequence[int], labels: Sequence[str]) -> Markup:
    """One bar per execution-time bucket, labelled by its upper bound."""
    scale = YScale.up_to(max(list(counts) + [1]))
    y = scale.y
    width = PLOT_W / max(1, len(counts))
    parts = [_svg_start("Jobs per execution time")]
    parts += _grid(scale)
    for index, (count, name) in enumerate(zip(counts, labels)):
        left = LEFT + index * width
        parts.append(f'<g class="point"><title>under {escape(name)}: {count:,} job(s)</title>'
                     f'<rect class="bar" x="{left + 1:.1f}" y="{y(count):.1f}" '
                     f'width="{width - 2:.1f}" height="{TOP + PLOT_H - y(count):.1f}"/></g>')
        if index % 3 == 0:
            parts.append(f'<text class="axis" x="{left + width / 2:.1f}" y="{HEIGHT - 6}" '
                         f'text-anchor="middle">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _svg_start(label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(label)}">')


def _points(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def _grid(scale: YScale) -> list[str]:
    lines = []
    for n in range(int(round(scale.top / scale.step)) + 1):
        value = n * scale.step
        y = scale.y(value)
        lines.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{y:.1f}" y2="{y:.1f}"/>')
        lines.append(f'<text class="axis" x="{LEFT - 8}" y="{y:.1f}" text-anchor="end" '
                     f'dominant-baseline="middle">{short_number(value)}</text>')
    return lines


def _x_labels(labels: Sequence[str], x) -> list[str]:
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    return [f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f'{escape(label)}</text>'
            for i, label in enumerate(labels) if (len(labels) - 1 - i) % every == 0]


def _dots(points: Sequence[Point], processed, failed) -> list[str]:
    dots = []
    for point, (px, py), (fx, fy) in zip(points, processed, failed):
        title = (f"{escape(point.title)}: {point.processed:,} processed, "
                 f"{point.failed:,} failed")
        dots.append(f'<g class="point"><title>{title}</title>'
                    f'<rect class="hit" x="{px - 6:.1f}" y="{TOP}" width="12" '
                    f'height="{PLOT_H}"/>'
                    f'<circle class="dot-processed" cx="{px:.1f}" cy="{py:.1f}" r="3"/>'
                    f'<circle class="dot-failed" cx="{fx:.1f}" cy="{fy:.1f}" r="2.5"/></g>')
    return dots
