"""Small server-side SVG charts: no script, no network, legible when printed.

Only presentation attributes are used (no style attributes), so the pages' CSP holds.
Each chart carries a <title> and a <desc> and a data table is rendered beside it for
screen readers and for anyone who would rather read numbers.
"""

import math
from dataclasses import dataclass
from decimal import Decimal
from html import escape

PALETTE = ("#0f766e", "#b45309", "#b91c1c", "#1d4ed8", "#6d28d9", "#475569")


@dataclass
class Series:
    name: str
    values: list[float]
    colour: str = ""


def _number(value) -> float:
    return float(value) if isinstance(value, Decimal) else float(value or 0)


def _nice_step(value: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 × 10^k) giving at most `ticks` intervals up to `value`."""
    raw = max(value, 1e-9) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if raw <= step * magnitude:
            return max(step * magnitude, 1.0 if value >= 1 else step * magnitude)
    return 10 * magnitude


def bar_chart(title: str, labels: list[str], series: list[Series], *, stacked: bool = True, unit: str = "",
              width: int = 640, height: int = 240) -> str:
    """A vertical bar chart (stacked or grouped) as an SVG string."""
    left, right, top, bottom = 44, 12, 28, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    count = max(len(labels), 1)
    totals = [sum(_number(s.values[i]) for s in series) if stacked else max((_number(s.values[i]) for s in series),
                                                                               default=0) for i in range(len(labels))]
    step = _nice_step(max(max(totals, default=0), 1))
    top_value = step * max(1, math.ceil(max(totals, default=0) / step))
    slot = plot_w / count
    bar_w = slot * 0.7 if stacked else slot * 0.8 / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart" '
        f'aria-labelledby="t-{id(series)}">',
        f'<title id="t-{id(series)}">{escape(title)}</title>',
        f'<desc>{escape(_describe(labels, series, unit))}</desc>',
    ]
    for tick in range(int(round(top_value / step)) + 1):
        value = tick * step
        y = top + plot_h - value / top_value * plot_h
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d5dd" '
                     'stroke-width="1"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#475467">'
                     f'{_format(value)}</text>')
    for i, label in enumerate(labels):
        x0 = left + i * slot + (slot - (bar_w if stacked else bar_w * len(series))) / 2
        base = top + plot_h
        for k, s in enumerate(series):
            value = _number(s.values[i])
            if value <= 0:
                continue
            h = value / top_value * plot_h
            colour = s.colour or PALETTE[k % len(PALETTE)]
            x = x0 if stacked else x0 + k * bar_w
            y = base - h if stacked else top + plot_h - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{escape(label)} · {escape(s.name)}: {_format(value)}{escape(unit)}</title></rect>')
            if stacked:
                base -= h
        if len(labels) <= 16 or i % 2 == 0:
            parts.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                         f'font-size="11" fill="#344054">{escape(label)}</text>')
    legend_x = left
    for k, s in enumerate(series):
        colour = s.colour or PALETTE[k % len(PALETTE)]
        parts.append(f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{height - 7}" font-size="11" fill="#344054">'
                     f'{escape(s.name)}</text>')
        legend_x += 22 + 7 * len(s.name)
    parts.append("</svg>")
    return "".join(parts)


def _format(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _describe(labels, series, unit) -> str:
    rows = []
    for i, label in enumerate(labels):
        values = ", ".join(f"{s.name} {_format(_number(s.values[i]))}{unit}" for s in series)
        rows.append(f"{label}: {values}")
    return "; ".join(rows)
