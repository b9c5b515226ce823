"""The alerts admin: rule and channel validation, write-only credentials,
the "send test" action, and the read-only incident and delivery log."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client

from alerts.engine import run_alerts
from alerts.models import AlertChannel, AlertRule, Delivery
from sessions.models import Session
from tests.alerts_support import receiver

pytestmark = pytest.mark.django_db
RULES_URL = "/admin/alerts/alertrule/"
CHANNELS_URL = "/admin/alerts/alertchannel/"
TOKEN = "B0123/XXXXsecretTOKENpart"
SECRET = "a-signing-secret-of-32-characters"


def rule_form(**fields: str) -> dict[str, str]:
    return {
        "name": "stuck turns",
        "kind": "session_stuck",
        "enabled": "on",
        "threshold_seconds": "900",
        "threshold_usd_per_hour": "",
        "threshold_ms": "",
        "window_days": "",
        "min_count": "",
        "per": "fleet",
        "agent": "",
        "channel": "",
        "model": "",
        "cooldown_seconds": "3600",
        **fields,
    }


def channel_form(**fields: str) -> dict[str, str]:
    return {
        "name": "hook",
        "kind": "webhook",
        "enabled": "on",
        "url": f"https://hooks.example.com/services/{TOKEN}",
        "secret": SECRET,
        "email_to": "",
        **fields,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"agent": "ko\x01da"},
        {"model": "o3\x7f"},
        {"channel": "fax"},
        {"kind": "burn_rate", "threshold_seconds": ""},
        {"kind": "burn_rate", "threshold_seconds": "", "threshold_usd_per_hour": "-1"},
        {"threshold_usd_per_hour": "5"},
        {"kind": "agent_silent", "threshold_seconds": ""},
        {"kind": "budget_warning"},
        {"per": "agent"},
        {"threshold_seconds": "0"},
        {"threshold_ms": "2000"},
        {"window_days": "3"},
        {"kind": "model_latency", "threshold_seconds": ""},
        {"kind": "model_latency", "threshold_seconds": "", "threshold_ms": "0"},
        {"kind": "tool_latency", "threshold_ms": "2000"},
        {"kind": "tool_latency", "threshold_seconds": "", "threshold_ms": "2000", "channel": "cli"},
        {"kind": "model_latency", "threshold_seconds": "", "threshold_ms": "9", "window_days": "0"},
        {
            "kind": "model_latency",
            "threshold_seconds": "",
            "threshold_ms": "9",
            "window_days": "99",
        },
        {"kind": "model_latency", "threshold_seconds": "", "threshold_ms": "9", "min_count": "0"},
        {"kind": "model_latency", "threshold_seconds": "", "threshold_ms": "9", "min_count": "-3"},
        {"min_count": "20"},
    ],
)
def test_a_rule_with_an_invalid_scope_or_threshold_is_a_form_error(
    admin_client: Client, fields: dict[str, str]
) -> None:
    response = admin_client.post(f"{RULES_URL}add/", rule_form(**fields))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not AlertRule.objects.exists()


def test_a_valid_rule_is_added(admin_client: Client) -> None:
    response = admin_client.post(
        f"{RULES_URL}add/",
        rule_form(kind="burn_rate", threshold_seconds="", threshold_usd_per_hour="5", per="agent"),
    )

    assert response.status_code == 302
    assert AlertRule.objects.get().per == "agent"


def test_a_latency_rule_is_added_with_its_threshold_window_and_minimum_count(
    admin_client: Client,
) -> None:
    response = admin_client.post(
        f"{RULES_URL}add/",
        rule_form(
            kind="tool_latency",
            threshold_seconds="",
            threshold_ms="30000",
            window_days="7",
            min_count="50",
        ),
    )

    assert response.status_code == 302
    made = AlertRule.objects.get()
    assert (made.kind, made.threshold_ms, made.window_days, made.min_count) == (
        "tool_latency",
        30000,
        7,
        50,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "ftp://example.com/x"},
        {"url": ""},
        {"secret": "short"},
        {"kind": "email", "email_to": "not an address"},
        {"kind": "email", "email_to": ""},
    ],
)
def test_a_channel_with_a_bad_target_is_a_form_error(
    admin_client: Client, fields: dict[str, str]
) -> None:
    response = admin_client.post(f"{CHANNELS_URL}add/", channel_form(**fields))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not AlertChannel.objects.exists()


def test_a_channels_url_and_secret_are_never_shown_back(admin_client: Client) -> None:
    admin_client.post(f"{CHANNELS_URL}add/", channel_form())
    made = AlertChannel.objects.get()

    pages = [admin_client.get(CHANNELS_URL), admin_client.get(f"{CHANNELS_URL}{made.pk}/change/")]

    for page in pages:
        html = page.content.decode()
        assert TOKEN not in html
        assert SECRET not in html
        assert "https://hooks.example.com/…" in html
        assert "…ters" in html  # the secret's last four characters


def test_saving_a_channel_with_blank_credentials_keeps_them(admin_client: Client) -> None:
    admin_client.post(f"{CHANNELS_URL}add/", channel_form())
    made = AlertChannel.objects.get()

    response = admin_client.post(
        f"{CHANNELS_URL}{made.pk}/change/", channel_form(name="renamed", url="", secret="")
    )

    assert response.status_code == 302
    made.refresh_from_db()
    assert (made.name, made.url, made.secret) == (
        "renamed",
        f"https://hooks.example.com/services/{TOKEN}",
        SECRET,
    )


def test_the_send_test_action_sends_and_reports(admin_client: Client, settings: Any) -> None:
    settings.FLEET_ALERTS_ALLOW_PRIVATE_TARGETS = True
    mailbox = AlertChannel.objects.create(name="mail", kind="email", email_to="ops@example.com")
    with receiver(status=500) as server:
        broken = AlertChannel.objects.create(name="broken", kind="slack", url=server.url())
        response = admin_client.post(
            CHANNELS_URL,
            {"action": "send_test_action", "_selected_action": [mailbox.pk, broken.pk]},
            follow=True,
        )

    shown = [str(m) for m in response.context["messages"]]
    assert "mail: test sent." in shown
    assert "broken: HTTP 500" in shown
    assert len(mail.outbox) == 1
    assert sorted(Delivery.objects.values_list("event", "status")) == [
        ("test", "failed"),
        ("test", "sent"),
    ]


def test_incidents_and_deliveries_are_listed_read_only(admin_client: Client) -> None:
    channel = AlertChannel.objects.create(name="mail", kind="email", email_to="ops@example.com")
    rule = AlertRule.objects.create(name="crashes", kind="session_unknown")
    rule.channels.set([channel])
    Session.objects.create(key="gone", agent="koda", status="unknown")
    run_alerts()

    incidents = admin_client.get("/admin/alerts/incident/")
    incident = admin_client.get(f"/admin/alerts/incident/{rule.incidents.get().pk}/change/")
    deliveries = admin_client.get("/admin/alerts/delivery/")

    assert "session gone" in incidents.content.decode()
    assert incident.status_code == 200
    assert "sent" in deliveries.content.decode()
    assert admin_client.get("/admin/alerts/incident/add/").status_code == 403
