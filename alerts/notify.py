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

from alerts.models import AlertChannel, AlertRule, Delivery, Incident
from alerts.transport import DeliveryError, post

DISCORD_LIMIT = 2000


def payload(event: str, incident: Incident | None, now: datetime) -> dict[str, Any]:
    """The JSON webhook's body (a test has no incident: ``"incident": null``)."""
    data: dict[str, Any] = {"event": event, "sent_at": now.isoformat(), "incident": None}
    if incident is not None:
        rule: AlertRule = incident.rule
        data["incident"] = {
            "id": incident.pk,
            "state": incident.state,
            "subject": incident.subject,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "details": incident.details,
            "rule": {"id": rule.pk, "name": rule.name, "kind": rule.kind},
        }
    return data


def text(event: str, incident: Incident | None) -> tuple[str, str]:
    """A subject line and a plain-text body."""
    if incident is None:
        return "[Fleet] test notification", "A test notification from Fleet's alerts."
    rule = incident.rule
    headlines = {Delivery.Event.OPENED.value: "Alert", Delivery.Event.RESOLVED.value: "Resolved"}
    headline = headlines.get(event, event)
    # One line: no header injection, whatever a name holds.
    subject = " ".join(f"[Fleet] {headline}: {rule.name} — {incident.subject}".split())
    lines = [
        f"{headline}: {rule.get_kind_display()}",
        f"Subject: {incident.subject}",
        f"Opened: {incident.opened_at.isoformat()}",
    ]
    if incident.resolved_at:
        lines.append(f"Resolved: {incident.resolved_at.isoformat()}")
    lines.extend(f"{name}: {value}" for name, value in incident.details.items() if value)
    return subject, "\n".join(lines)


def _slack_escape(value: str) -> str:
    """Slack's control characters: a name holding ``<!channel>`` must not ping anyone."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def send(channel: AlertChannel, event: str, incident: Incident | None, delivery_id: int) -> None:
    """Send one notification; ``DeliveryError`` when it failed (a safe message)."""
    now = timezone.now()
    subject, body_text = text(event, incident)
    if channel.kind == AlertChannel.Kind.EMAIL:
        try:
            send_mail(subject, body_text, None, channel.recipients, fail_silently=False)
        except Exception as exc:  # any backend's failure is this delivery's
            raise DeliveryError(f"email failed: {type(exc).__name__}") from None
        return
    headers: dict[str, str] = {}
    if channel.kind == AlertChannel.Kind.WEBHOOK:
        body = json.dumps(payload(event, incident, now), separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {
            "X-Fleet-Event": event,
            "X-Fleet-Delivery": str(delivery_id),
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
