"""What a notification says, per channel kind, and sending it.

The JSON webhook's payload (README "Alerts") is ``payload()``; it is signed
with HMAC-SHA256 over ``"<timestamp>.<body>"`` with the channel's secret,
sent as ``X-Fleet-Signature: sha256=<hex>`` with ``X-Fleet-Timestamp``.
Slack gets ``{"text": …}`` (``&``, ``<``, ``>`` escaped: no mentions),
Discord ``{"content": …}`` (its 2 000 characters at most, no mentions), email
a plain-text message through Django's email backend (a one-line subject).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from django.core.mail import send_mail
from django.utils import timezone

from alerts.models import AlertChannel, AlertRule, Delivery
from alerts.transport import DeliveryError, post

DISCORD_LIMIT = 2000
GROUP_LINES = 50  # subjects listed in a grouped text message (the webhook gets all)


def payload(delivery: Delivery, now: datetime) -> dict[str, Any]:
    """The JSON webhook's body: ``incident`` for one, ``group`` for several, neither
    for a test."""
    data: dict[str, Any] = {
        "event": delivery.event,
        "sent_at": now.isoformat(),
        "incident": None,
        "group": None,
    }
    incident = delivery.incident
    if incident is not None:
        data["incident"] = {
            "id": incident.pk,
            "state": incident.state,
            "subject": incident.subject,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "details": incident.details,
            "rule": _rule(incident.rule),
        }
    elif delivery.rule is not None:
        data["group"] = {
            "rule": _rule(delivery.rule),
            "count": len(delivery.subjects),
            "subjects": delivery.subjects,
        }
    return data


def _rule(rule: AlertRule) -> dict[str, Any]:
    return {"id": rule.pk, "name": rule.name, "kind": rule.kind}


def text(delivery: Delivery) -> tuple[str, str]:
    """A subject line and a plain-text body."""
    headlines = {Delivery.Event.OPENED.value: "Alert", Delivery.Event.RESOLVED.value: "Resolved"}
    headline = headlines.get(delivery.event, delivery.event)
    incident, rule = delivery.incident, delivery.rule
    if incident is not None:
        rule = incident.rule
        about = incident.subject
        lines = [
            f"{headline}: {rule.get_kind_display()}",
            f"Subject: {incident.subject}",
            f"Opened: {incident.opened_at.isoformat()}",
        ]
        if incident.resolved_at:
            lines.append(f"Resolved: {incident.resolved_at.isoformat()}")
        lines.extend(f"{name}: {value}" for name, value in incident.details.items() if value)
    elif rule is not None:
        shown = delivery.subjects[:GROUP_LINES]
        about = f"{len(delivery.subjects)} subjects"
        lines = [f"{headline}: {rule.get_kind_display()}", f"{about}:"]
        lines.extend(f"- {subject}" for subject in shown)
        if len(delivery.subjects) > len(shown):
            lines.append(f"… and {len(delivery.subjects) - len(shown)} more")
    else:
        return "[Fleet] test notification", "A test notification from Fleet's alerts."
    # One line: no header injection, whatever a name holds.
    subject = " ".join(f"[Fleet] {headline}: {rule.name} — {about}".split())
    return subject, "\n".join(lines)


def _slack_escape(value: str) -> str:
    """Slack's control characters: a name holding ``<!channel>`` must not ping anyone."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def send(delivery: Delivery) -> None:
    """Send one notification; ``DeliveryError`` when it failed (a safe message)."""
    now = timezone.now()
    channel = delivery.channel
    subject, body_text = text(delivery)
    if channel.kind == AlertChannel.Kind.EMAIL:
        try:
            send_mail(subject, body_text, None, channel.recipients, fail_silently=False)
        except Exception as exc:  # any backend's failure is this delivery's
            raise DeliveryError(f"email failed: {type(exc).__name__}") from None
        return
    headers: dict[str, str] = {}
    if channel.kind == AlertChannel.Kind.WEBHOOK:
        body = json.dumps(payload(delivery, now), separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {
            "X-Fleet-Event": delivery.event,
            "X-Fleet-Delivery": str(delivery.pk),
            "X-Fleet-Timestamp": timestamp,
            "X-Fleet-Signature": sign(channel.secret, timestamp, body),
        }
    elif channel.kind == AlertChannel.Kind.SLACK:
        escaped = _slack_escape(f"*{subject}*\n{body_text}")
        body = json.dumps({"text": escaped}).encode()
    elif channel.kind == AlertChannel.Kind.DISCORD:
        content = f"**{subject}**\n{body_text}"
        if len(content) > DISCORD_LIMIT:
            content = content[: DISCORD_LIMIT - 1] + "…"
        body = json.dumps({"content": content, "allowed_mentions": {"parse": []}}).encode()
    else:
        raise DeliveryError(f"unknown channel kind {channel.kind!r}")
    post(channel.url, body, headers)
