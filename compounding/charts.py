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


# --- a location's month of temperatures -------------------------------------------------------------

BAND_COLOUR, LINE_COLOUR, EXCURSION_COLOUR = "#d1fadf", "#1d4ed8", "#b91c1c"
# Above this many readings the line is drawn from each hour's lowest and highest reading, in the
# order they were read: every excursion's peak stays on the chart and the SVG stays small.
DRAWN_POINTS_MAX = 800


def temperature_chart(report, *, width: int = 760, height: int = 280) -> str:
    """A month of readings (queries.cold_chain.MonthReport) as an SVG: the allowed range as a band, the
    readings as a line (broken where readings were missed), excursions marked, the month's days on the x axis."""
    from datetime import datetime, timedelta  # local: the bar charts need neither

    left, right, top, bottom = 44, 12, 24, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    location, zone = report.location, report.location.zone
    start, end = report.start_at, report.end_at
    seconds = (end - start).total_seconds()
    points = _drawn_points(report.readings, report.overdue_after)
    bounds = [float(v) for v in (location.min_celsius, location.max_celsius) if v is not None]
    values = [float(c) for segment in points for _, c in segment] + bounds
    low, high = (min(values), max(values)) if values else (0.0, 10.0)
    step = _nice_step(max(high - low, 1.0), 5)
    y_min, y_max = math.floor(low / step - 0.5) * step, math.ceil(high / step + 0.5) * step

    def x(moment) -> float:
        return left + (moment - start).total_seconds() / seconds * plot_w

    def y(value) -> float:
        return top + plot_h - (float(value) - y_min) / (y_max - y_min) * plot_h

    title = f"{location.code} {location.name}: temperatures {report.label} ({zone.key})"
    desc = (f"{report.count} readings; lowest {_c(report.low)}, highest {_c(report.high)}, mean {_c(report.mean)} °C; "
            f"{len(report.excursions)} excursions")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart" '
             f'aria-labelledby="t-month-{location.id}">',
             f'<title id="t-month-{location.id}">{escape(title)}</title>', f"<desc>{escape(desc)}</desc>"]
    if location.min_celsius is not None or location.max_celsius is not None:
        band_top = y(min(float(location.max_celsius), y_max)) if location.max_celsius is not None else top
        band_bottom = y(max(float(location.min_celsius), y_min)) if location.min_celsius is not None else top + plot_h
        parts.append(f'<rect x="{left}" y="{band_top:.1f}" width="{plot_w}" height="{band_bottom - band_top:.1f}" '
                     f'fill="{BAND_COLOUR}"><title>Allowed range</title></rect>')
    tick = y_min
    while tick <= y_max + 1e-9:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#d0d5dd" '
                     'stroke-width="1"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#475467">{tick:g}</text>')
        tick += step
    day = datetime(report.year, report.month, 1, tzinfo=zone)
    while day.month == report.month:
        at = x(day)
        parts.append(f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eaecf0" '
                     'stroke-width="1"/>')
        if day.day == 1 or day.day % 5 == 0:
            parts.append(f'<text x="{at:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" '
                         f'fill="#344054">{day.day}</text>')
        day += timedelta(days=1)  # the next midnight on the site's clock (wall-clock arithmetic)
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" font-size="11" '
                 f'fill="#344054">Day of {report.label} · °C</text>')
    for excursion in report.excursions:
        x0 = x(max(excursion.started_at, start))
        x1 = x(min(excursion.ended_at or end, end))
        parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 2):.1f}" height="{plot_h}" '
                     f'fill="{EXCURSION_COLOUR}" fill-opacity="0.18" stroke="{EXCURSION_COLOUR}" stroke-width="1">'
                     f'<title>{excursion.code}: {_c(excursion.low_celsius)} to {_c(excursion.high_celsius)} °C'
                     f'</title></rect>')
        parts.append(f'<text x="{x0 + 2:.1f}" y="{top - 6}" font-size="10" fill="{EXCURSION_COLOUR}">'
                     f'{excursion.code}</text>')
    for segment in points:
        parts.append(_polyline([f"{x(moment):.1f},{y(celsius):.1f}" for moment, celsius in segment]))
    parts.append("</svg>")
    return "".join(parts)


def _polyline(points: list[str]) -> str:
    if len(points) == 1:
        x, y = points[0].split(",")
        return f'<circle cx="{x}" cy="{y}" r="2" fill="{LINE_COLOUR}"/>'
    return (f'<polyline points="{" ".join(points)}" fill="none" stroke="{LINE_COLOUR}" stroke-width="1.2" '
            'stroke-linejoin="round"/>')


def _drawn_points(readings, gap) -> list[list[tuple]]:
    """Runs of (moment, celsius) to draw, a new run after each gap longer than `gap` (missed readings):
    every reading, or past DRAWN_POINTS_MAX each hour's lowest and highest in time order."""
    runs, previous = [], None
    for r in readings:
        if previous is None or r.measured_at - previous > gap:
            runs.append([])
        runs[-1].append(r)
        previous = r.measured_at
    if len(readings) <= DRAWN_POINTS_MAX:
        return [[(r.measured_at, r.celsius) for r in run] for run in runs]
    return [_hourly_envelope(run) for run in runs]


def _hourly_envelope(run) -> list[tuple]:
    drawn, hour, lowest, highest = [], None, None, None
    for r in run:
        key = r.measured_at.replace(minute=0, second=0, microsecond=0)
        if key != hour:
            drawn.extend(_in_order(lowest, highest))
            hour, lowest, highest = key, r, r
        else:
            lowest = r if r.celsius < lowest.celsius else lowest
            highest = r if r.celsius > highest.celsius else highest
    drawn.extend(_in_order(lowest, highest))
    return drawn


def _in_order(lowest, highest) -> list[tuple]:
    if lowest is None:
        return []
    if lowest is highest:
        return [(lowest.measured_at, lowest.celsius)]
    pair = sorted((lowest, highest), key=lambda r: r.measured_at)
    return [(r.measured_at, r.celsius) for r in pair]


def _c(value) -> str:
    return "–" if value is None else f"{Decimal(value).normalize():f}"
