"""Formatting for the dashboard: relative times, money, tokens, JSON.

Every filter here returns escaped HTML (``format_html``, ``fleet.markup``'s) or
plain text that the template escapes: agent-supplied values never pass through
``mark_safe``.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone
from django.utils.safestring import SafeString

from fleet.markup import format_html
from sessions.choices import Channel, Kind, Status
from sessions.money import short_usd

register = template.Library()

UNPRICED_TITLE = "No price is known for this model: the cost is not counted"


# --- money -------------------------------------------------------------------


@register.simple_tag
def money(amount: Decimal | None, unpriced: int = 0) -> SafeString:
    """A cost that says "unpriced" instead of showing $0 for usage with no price.

    ``unpriced`` is the number of calls whose cost is unknown (not in ``amount``).
    """
    unpriced = int(unpriced or 0)
    if amount is None or (not amount and unpriced):
        note = f"{unpriced:,} calls with no known price" if unpriced else UNPRICED_TITLE
        return format_html('<span class="unpriced" title="{}">unpriced</span>', note)
    text = short_usd(amount)
    if unpriced:
        return format_html(
            '<span class="money" title="{}">{}</span>'
            ' <span class="unpriced" title="{}">+&#8201;{} unpriced</span>',
            f"{amount:f} USD",
            text,
            f"{unpriced:,} calls with no known price are not counted",
            f"{unpriced:,}",
        )
    return format_html('<span class="money" title="{}">{}</span>', f"{amount:f} USD", text)


@register.filter
def usd(amount: Decimal | None) -> str:
    return short_usd(amount)


# --- numbers and tokens ------------------------------------------------------


def compact_number(value: int | None) -> str:
    """``950``, ``12.3k``, ``123k``, ``1.23M``, ``4.5B``."""
    n = int(value or 0)
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1000:
        return f"{sign}{n}"
    for divisor, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= divisor:
            scaled = n / divisor
            if scaled >= 100:
                return f"{sign}{scaled:,.0f}{suffix}"
            if scaled >= 10:
                return f"{sign}{scaled:.1f}{suffix}"
            return f"{sign}{scaled:.2f}{suffix}"
    return f"{sign}{n}"  # pragma: no cover - unreachable


@register.filter
def tokens(value: int | None) -> SafeString:
    """A compact token count with the exact number on hover."""
    n = int(value or 0)
    return format_html('<span class="num" title="{} tokens">{}</span>', f"{n:,}", compact_number(n))


@register.filter
def num(value: int | None) -> str:
    return f"{int(value or 0):,}"


@register.filter
def clip(value: Any, length: int) -> str:
    """``value`` cut to ``length`` characters, the last one an ellipsis if it was longer.

    The sessions table's cells: ``truncatechars`` looks up a translated
    ellipsis and counts grapheme clusters on every call, a tenth of the
    table's rendering time; code points are enough for a preview.
    """
    text = str(value)
    return text if len(text) <= length else text[: length - 1] + "…"


@register.filter
def percent(part: int | None, whole: int | None) -> str:
    if not whole:
        return ""
    return f"{100 * (part or 0) / whole:.0f}%"


# --- times -------------------------------------------------------------------


def relative(moment: datetime, now: datetime | None = None) -> str:
    seconds = ((now or timezone.now()) - moment).total_seconds()
    if seconds < -60:
        return "in the future"
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)} d ago"
    return timezone.localtime(moment).strftime("%Y-%m-%d")


def exact(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


@register.filter
def ago(moment: datetime | None) -> SafeString | str:
    """``3 min ago`` with the exact time on hover."""
    if moment is None:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        exact(moment),
        relative(moment),
    )


@register.filter
def exact_time(moment: datetime | None) -> SafeString | str:
    if moment is None:
        return "—"
    return format_html('<time datetime="{}">{}</time>', moment.isoformat(), exact(moment))


@register.filter
def duration_since(moment: datetime | None) -> str:
    """``42 s``, ``3 min``, ``2 h 5 min`` since ``moment``."""
    if moment is None:
        return ""
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


@register.filter
def milliseconds(value: int | None) -> str:
    """A duration in ms as people read it: ``850 ms``, ``2.3 s``, ``4 min 5 s``, ``2 h 5 min``."""
    if value is None:
        return ""
    if value < 1000:
        return f"{value} ms"
    tenths = round(value / 100)
    if tenths < 600:
        return f"{tenths / 10:.1f} s"
    minutes, seconds = divmod(round(value / 1000), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


# --- the fleet page's sessions table ------------------------------------------

STATUS_LABELS = dict(Status.choices)
KIND_LABELS = dict(Kind.choices)
CHANNEL_LABELS = dict(Channel.choices)


@register.simple_tag
def session_row(s: Any) -> SafeString:
    """One row of the fleet page's sessions table (``fleet/fleet.html``).

    Python rather than template markup: 50 rows × 10 cells of template nodes,
    lookups, ``get_*_display`` calls and filters were half of the page's
    rendering (docs/DECISIONS.md "The fleet page at 50 ms"). The markup is
    the template's, put together from literals only; every value goes through
    one ``format_html`` (escaped).
    """
    markup = ['<tr>\n<td class="nowrap">\n<span class="badge status-{}">{}</span>\n']
    values: list[Any] = [s.status, STATUS_LABELS.get(s.status, s.status)]
    if s.status == Status.ACTIVE:
        started = s.turn_started_at
        markup.append('<span class="state state-{}"')
        values.append(s.state)
        if started:
            markup.append(' title="turn started {}"')
            values.append(timezone.localtime(started).strftime("%Y-%m-%d %H:%M:%S"))
        markup.append(">{}")
        values.append(s.state)
        if s.state == "running" and started:
            markup.append(" {}")
            values.append(duration_since(started))
        markup.append("</span>")
    markup.append('\n</td>\n<td class="muted">{}</td>\n')
    values.append(KIND_LABELS.get(s.kind, s.kind))
    if s.channel:
        markup.append('<td><span class="chip">{}</span></td>\n')
        values.append(CHANNEL_LABELS.get(s.channel, s.channel))
    else:
        markup.append('<td><span class="muted">—</span></td>\n')
    markup.append(
        '<td class="clip">{}</td>\n<td class="clip model">{}</td>\n'
        '<td class="name">\n<a href="{}">{}</a>\n'
    )
    values += [s.agent or "—", s.model or "—", s.get_absolute_url(), clip(s.name or s.key, 70)]
    if s.goal_preview:
        markup.append('<div class="goal" title="{}">{}</div>')
        values += [s.goal_preview, clip(s.goal_preview, 110)]
    elif s.name:
        markup.append('<div class="goal mono">{}</div>')
        values.append(clip(s.key, 60))
    markup.append(
        '\n</td>\n<td class="num">{}</td>\n<td class="num">{}</td>\n'
        '<td class="num">{}</td>\n<td class="num nowrap">{}</td>\n</tr>'
    )
    values += [
        num(s.turns),
        tokens(s.total_tokens),
        money(s.cost_usd, s.unpriced_calls),
        ago(s.last_active_at),
    ]
    return format_html("".join(markup), *values)


# --- JSON --------------------------------------------------------------------


def pretty_json_text(value: Any) -> str:
    """Pretty-printed JSON (two-space indent) of a value or of a JSON string.

    A string that is not JSON comes back unchanged. Returns plain text for the
    template to escape.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped or stripped[0] not in "[{":
            return value
        try:
            value = json.loads(stripped)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


@register.filter
def pretty_json(value: Any) -> str:
    return pretty_json_text(value)
