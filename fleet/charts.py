"""Server-side SVG charts of the daily rollups: cost per day by model, tokens per
day, and model call latency per day (p50 and p95, from the latency rollup).

This module computes the geometry; ``templates/fleet/fleet.html`` draws the
axes and legend. The bars (hundreds per chart) are one ``format_html_join``
(``fleet.markup``'s) here rather than a template loop, a tenth of the
rendering time; it escapes every value like the template would (model names in titles are
agent-supplied). Colours are CSS classes (``s0`` … ``s6``): the page's CSP forbids
inline styles.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.utils.safestring import SafeString

from fleet.markup import format_html_join
from fleet.templatetags.fleet_tags import compact_number, milliseconds
from sessions.latency import percentile
from sessions.money import short_usd

WIDTH = 640
HEIGHT = 200
LEFT = 52  # room for the y labels
RIGHT = 8
TOP = 10
BOTTOM = 22  # room for the x labels
MAX_SERIES = 6  # the costliest models get their own colour; the rest are "other"


def _coord(value: float) -> str:
    # Text, so that templates do not localize hundreds of floats per chart.
    return f"{value:.2f}"


# One bar of a chart's SVG: its series (the CSS class), place and size, and
# its tooltip.
BAR_SVG = '<rect class="s{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>'


@dataclass(frozen=True)
class Bar:
    x: str
    y: str
    width: str
    height: str
    series: int
    title: str


@dataclass(frozen=True)
class Tick:
    y: str
    label: str


@dataclass(frozen=True)
class DayLabel:
    x: str
    label: str


@dataclass(frozen=True)
class Series:
    index: int
    label: str
    total: str


@dataclass
class Chart:
    title: str
    total: str
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    days: list[DayLabel] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    note: str = ""

    @property
    def empty(self) -> bool:
        return not self.bars

    @property
    def bars_svg(self) -> SafeString:
        # One join over every bar (a month of stacked bars is ~300 of them on
        # every fleet page), each value escaped (fleet.markup).
        return format_html_join(
            "\n", BAR_SVG, ((b.series, b.x, b.y, b.width, b.height, b.title) for b in self.bars)
        )

    @property
    def view_box(self) -> str:
        return f"0 0 {self.width} {self.height}"


def nice_step(value: float) -> float:
    """The smallest 1/2/2.5/5 × 10ⁿ at or above ``value``."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * 0.999999:
            return candidate
    return 10 ** (exponent + 1)  # pragma: no cover - the loop always returns


def nice_axis(value: float) -> tuple[float, int]:
    """An axis top with round gridlines: ``(top, intervals)``, 3 to 5 intervals."""
    options = []
    for intervals in (5, 4, 3):
        step = nice_step(value / intervals)
        options.append((step * intervals, intervals))
    return min(options)


def _stacked(
    chart: Chart,
    *,
    start: date,
    days: int,
    values: dict[date, list[float]],
    titles: dict[date, list[str]],
    fmt: Any,
) -> Chart:
    day_totals = [sum(values.get(start + timedelta(days=i), [])) for i in range(days)]
    top, intervals = nice_axis(max(day_totals, default=0))
    plot_height = chart.baseline - TOP
    slot = (chart.plot_right - chart.plot_left) / days
    gap = max(1.0, slot * 0.18)
    for step in range(intervals + 1):
        tick_y = _coord(chart.baseline - plot_height * step / intervals)
        chart.ticks.append(Tick(y=tick_y, label=fmt(top * step / intervals)))
    for i in range(days):
        day = start + timedelta(days=i)
        x = chart.plot_left + i * slot + gap / 2
        if i % 7 == (days - 1) % 7:
            chart.days.append(DayLabel(x=_coord(x + (slot - gap) / 2), label=day.strftime("%b %d")))
        y = chart.baseline
        for series_index, value in enumerate(values.get(day, [])):
            if value <= 0:
                continue
            height = plot_height * value / top
            y -= height
            chart.bars.append(
                Bar(
                    x=_coord(x),
                    y=_coord(y),
                    width=_coord(slot - gap),
                    height=_coord(max(height, 0.5)),
                    series=series_index,
                    title=f"{day:%a %b %d} · {titles[day][series_index]}",
                )
            )
    return chart


def cost_chart(rows: list[dict[str, Any]], *, start: date, days: int = 30) -> Chart:
    """Cost per day over ``days`` days, stacked by model (the costliest get colours)."""
    by_model: dict[str, Decimal] = defaultdict(Decimal)
    unpriced = 0
    for row in rows:
        by_model[row["model"] or "(no model)"] += Decimal(row["cost"] or 0)
        unpriced += int(row["unpriced"] or 0)
    ranked = [m for m, cost in sorted(by_model.items(), key=lambda kv: (-kv[1], kv[0])) if cost > 0]
    named = ranked[:MAX_SERIES]
    has_other = len(ranked) > MAX_SERIES
    labels = [*named, "other models"] if has_other else named
    index = {model: i for i, model in enumerate(named)}

    amounts: dict[date, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * len(labels))
    for row in rows:
        cost = Decimal(row["cost"] or 0)
        if cost <= 0:
            continue
        model = row["model"] or "(no model)"
        amounts[row["day"]][index.get(model, len(labels) - 1)] += cost
    total = sum(by_model.values(), Decimal(0))
    chart = Chart(title="Cost per day", total=short_usd(total))
    values = {day: [float(a) for a in per] for day, per in amounts.items()}
    titles = {
        day: [f"{labels[i]}: {short_usd(a)}" for i, a in enumerate(per)]
        for day, per in amounts.items()
    }
    totals: defaultdict[int, Decimal] = defaultdict(Decimal)  # by series index
    for per in amounts.values():
        for i, amount in enumerate(per):
            totals[i] += amount
    chart.series = [Series(i, label, short_usd(totals[i])) for i, label in enumerate(labels)]
    if unpriced:
        chart.note = f"{unpriced:,} unpriced calls are not in these costs"
    return _stacked(chart, start=start, days=days, values=values, titles=titles, fmt=_axis_usd)


TOKEN_SERIES = ("uncached input", "cache read", "cache write", "output")


def tokens_chart(rows: list[dict[str, Any]], *, start: date, days: int = 30) -> Chart:
    """Tokens per day: uncached input, cache read, cache write and output.

    The four parts do not overlap and add up to all tokens (input includes
    cache tokens; reasoning is part of output and not stacked again).
    """
    parts: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        read = int(row["cache_read_tokens"] or 0)
        write = int(row["cache_creation_tokens"] or 0)
        prompt = int(row["prompt_tokens"] or 0)
        day = parts[row["day"]]
        day[0] += max(0, prompt - read - write)
        day[1] += read
        day[2] += write
        day[3] += int(row["completion_tokens"] or 0)
    parts = {day: per for day, per in parts.items() if any(per)}
    totals = [sum(per[i] for per in parts.values()) for i in range(4)]
    chart = Chart(title="Tokens per day", total=compact_number(sum(totals)) + " tokens")
    chart.series = [
        Series(i, label, compact_number(totals[i])) for i, label in enumerate(TOKEN_SERIES)
    ]
    values = {day: [float(v) for v in per] for day, per in parts.items()}
    titles = {
        day: [f"{TOKEN_SERIES[i]}: {v:,} tokens" for i, v in enumerate(per)]
        for day, per in parts.items()
    }
    return _stacked(chart, start=start, days=days, values=values, titles=titles, fmt=_axis_tokens)


LATENCY_SERIES = ("p50", "p50 → p95")


def latency_chart(
    days_histograms: dict[date, tuple[dict[int, int], int]], *, start: date, days: int = 30
) -> Chart:
    """Model call latency per day: a bar to the day's p50, and on top of it the
    part up to its p95 (so a bar's top is the p95). Percentiles as the latency
    panels read them (``sessions.latency``: at most 9 % above the exact value);
    the legend's figures are those of the whole 30 days."""
    values: dict[date, list[float]] = {}
    titles: dict[date, list[str]] = {}
    merged: dict[int, int] = {}
    calls = 0
    for day, (counts, _) in days_histograms.items():
        p50, p95 = percentile(counts, 0.5), percentile(counts, 0.95)
        if p50 is None or p95 is None:
            continue
        for bucket, count in counts.items():
            merged[bucket] = merged.get(bucket, 0) + count
        calls += sum(counts.values())
        values[day] = [float(p50), float(p95 - p50)]
        p50_title = f"p50: {milliseconds(p50)}" if p95 > p50 else f"p50 = p95: {milliseconds(p50)}"
        titles[day] = [p50_title, f"p95: {milliseconds(p95)}"]
    chart = Chart(title="Model call latency per day", total=f"{compact_number(calls)} calls")
    chart.series = [
        Series(0, LATENCY_SERIES[0], milliseconds(percentile(merged, 0.5))),
        Series(1, LATENCY_SERIES[1], milliseconds(percentile(merged, 0.95))),
    ]
    return _stacked(chart, start=start, days=days, values=values, titles=titles, fmt=_axis_ms)


def _axis_ms(value: float) -> str:
    return milliseconds(round(value)) if value else "0"


def _axis_usd(value: float) -> str:
    if value == 0:
        return "$0"
    if value >= 1:
        text = f"{value:,.2f}".removesuffix(".00")
        return f"${text[:-1] if '.' in text and text.endswith('0') else text}"
    return short_usd(Decimal(str(round(value, 9))))


def _axis_tokens(value: float) -> str:
    return compact_number(round(value))
