"""Alert deliveries against a real local HTTP server: payloads, the HMAC,
email, timeouts, retries with backoff, redirects, private targets, secrets."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from alerts.engine import backoff, run_alerts, send_test
from alerts.models import AlertChannel, AlertRule, Delivery, Incident
from alerts.transport import _is_public
from sessions.models import Session
from tests.alerts_support import receiver

pytestmark = pytest.mark.django_db
SECRET = "a-signing-secret-of-32-characters"
_n = itertools.count()


@pytest.fixture
def private_allowed(settings: Any) -> None:
    """The local test server listens on loopback: allowed only when opted in."""
    settings.FLEET_ALERTS_ALLOW_PRIVATE_TARGETS = True


def channel(kind: str, url: str = "", **fields: Any) -> AlertChannel:
    return AlertChannel.objects.create(name=f"{kind} {next(_n)}", kind=kind, url=url, **fields)


def crash(*channels: AlertChannel) -> Incident:
    """An unknown-session rule on ``channels``, a crashed session, and one run."""
    rule = AlertRule.objects.create(name=f"crash {next(_n)}", kind="session_unknown")
    rule.channels.set(channels)
    Session.objects.create(key=f"k{next(_n)}", agent="koda", status="unknown")
    run_alerts()
    return Incident.objects.get(rule=rule)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The README's verification snippet."""
    timestamp = headers["X-Fleet-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + expected.hexdigest(), headers["X-Fleet-Signature"])


def test_the_json_webhook_gets_the_documented_payload_and_the_hmac_verifies(
    private_allowed: None,
) -> None:
    with receiver() as server:
        incident = crash(channel("webhook", server.url(), secret=SECRET))

    [got] = server.requests
    assert verify(SECRET, got.headers, got.body)
    assert not verify("another-secret-of-32-characters!", got.headers, got.body)
    assert got.headers["X-Fleet-Event"] == "opened"
    assert got.headers["Content-Type"] == "application/json"
    body = got.json
    assert body["event"] == "opened"
    assert body["incident"]["id"] == incident.pk
    assert body["incident"]["subject"] == incident.subject
    assert body["incident"]["state"] == "open"
    assert body["incident"]["rule"] == {
        "id": incident.rule_id,
        "name": incident.rule.name,
        "kind": "session_unknown",
    }
    assert body["incident"]["details"]["agent"] == "koda"


def test_slack_and_discord_get_their_message_formats(private_allowed: None) -> None:
    with receiver() as server:
        crash(channel("slack", server.url("/slack")), channel("discord", server.url("/discord")))

    by_path = {r.path: r.json for r in server.requests}
    assert set(by_path["/slack"]) == {"text"}
    assert by_path["/slack"]["text"].startswith("*[Fleet] Alert: crash")
    assert by_path["/discord"]["content"].startswith("**[Fleet] Alert: crash")
    assert by_path["/discord"]["allowed_mentions"] == {"parse": []}


def test_email_lands_in_the_outbox() -> None:
    incident = crash(channel("email", email_to="ops@example.com, oncall@example.com"))

    [message] = mail.outbox
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert incident.subject in message.subject
    assert "session became unknown" in message.body


def test_a_hanging_endpoint_times_out_and_is_retried_later(
    private_allowed: None, settings: Any
) -> None:
    settings.FLEET_ALERTS_TIMEOUT = 1
    with receiver(delay=5) as server:
        began = time.monotonic()
        crash(channel("webhook", server.url(), secret=SECRET))
        took = time.monotonic() - began

    delivery = Delivery.objects.get()
    assert took < 4
    assert (delivery.status, delivery.attempts) == ("retry", 1)
    assert delivery.last_error == "timed out after 1 s"


def test_a_500_is_retried_later_with_backoff_then_sent(private_allowed: None) -> None:
    with receiver(status=500) as server:
        crash(channel("webhook", server.url(), secret=SECRET))
        first = Delivery.objects.get()
        assert (first.status, first.attempts, first.last_error) == ("retry", 1, "HTTP 500")
        assert first.next_attempt_at > timezone.now() + timedelta(seconds=50)

        run_alerts()  # not due yet: nothing sent
        assert len(server.requests) == 1

        Delivery.objects.update(next_attempt_at=timezone.now())
        server.status = 200
        run_alerts()

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 2, "")
    assert len(server.requests) == 2


def test_the_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 7, 8, 20)] == [
        60,
        120,
        240,
        3600,
        3600,
        3600,
    ]


def test_a_delivery_is_given_up_after_the_last_attempt(
    private_allowed: None, settings: Any
) -> None:
    settings.FLEET_ALERTS_MAX_ATTEMPTS = 2
    with receiver(status=503) as server:
        crash(channel("webhook", server.url(), secret=SECRET))
        Delivery.objects.update(next_attempt_at=timezone.now())
        result = run_alerts()

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, result.failed) == ("failed", 2, 1)


def test_a_redirect_to_another_host_is_not_followed(private_allowed: None) -> None:
    with receiver(host="127.0.0.2") as elsewhere:  # noqa: SIM117 - the second needs the first
        with receiver(status=302, location=elsewhere.url("/stolen")) as server:
            crash(channel("webhook", server.url(), secret=SECRET))

    assert len(server.requests) == 1
    assert elsewhere.requests == []
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_error) == ("retry", "HTTP 302: redirect not followed")


def test_a_private_address_is_refused_by_default() -> None:
    with receiver() as server:
        crash(channel("webhook", server.url(), secret=SECRET))

    assert server.requests == []
    delivery = Delivery.objects.get()
    assert delivery.status == "retry"
    assert delivery.last_error.startswith("refused: the target resolves to a private")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address checked, not bound
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
    ],
)
def test_only_global_addresses_are_public(address: str, public: bool) -> None:
    assert _is_public(address) is public


def test_a_failing_channel_never_blocks_the_others(private_allowed: None, settings: Any) -> None:
    settings.FLEET_ALERTS_TIMEOUT = 1
    with receiver(delay=5) as hanging, receiver() as healthy:
        crash(
            channel("webhook", hanging.url(), secret=SECRET),
            channel("slack", healthy.url()),
            channel("email", email_to="ops@example.com"),
        )

    assert len(healthy.requests) == 1
    assert len(mail.outbox) == 1
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["retry", "sent", "sent"]


def test_secrets_are_never_logged_nor_kept_in_errors(
    private_allowed: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with receiver(status=500) as server:
        token = "T0KEN-in-the-path-XYZ"
        crash(channel("slack", server.url(f"/services/{token}")))

    delivery = Delivery.objects.get()
    assert token not in delivery.last_error
    assert token not in caplog.text
    assert "HTTP 500" in caplog.text


def test_send_test_delivers_and_logs_a_test_delivery(private_allowed: None) -> None:
    with receiver() as server:
        sent = send_test(channel("webhook", server.url(), secret=SECRET))

    [got] = server.requests
    assert verify(SECRET, got.headers, got.body)
    assert (got.json["event"], got.json["incident"]) == ("test", None)
    sent.refresh_from_db()
    assert (sent.event, sent.status, sent.attempts) == ("test", "sent", 1)


def test_a_failed_test_is_not_retried() -> None:
    sent = send_test(channel("webhook", "http://127.0.0.1:9/hook", secret=SECRET))

    assert (sent.status, sent.attempts) == ("failed", 1)


def test_the_readmes_verification_snippet_verifies_a_delivery(private_allowed: None) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    snippet = readme.split("def verify(secret", 1)[0].rsplit("```python", 1)[1]
    snippet += "def verify(secret" + readme.split("def verify(secret", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - our own README
    with receiver() as server:
        crash(channel("webhook", server.url(), secret=SECRET))

    [got] = server.requests
    assert namespace["verify"](SECRET, got.headers, got.body)
    assert not namespace["verify"](SECRET, got.headers, got.body + b" ")


def test_names_in_a_slack_message_cannot_mention_anyone(private_allowed: None) -> None:
    rule = AlertRule.objects.create(name="crash <!channel>", kind="session_unknown")
    with receiver() as server:
        rule.channels.set([channel("slack", server.url())])
        Session.objects.create(key="k-mention", agent="<!here> & co", status="unknown")
        run_alerts()

    text = server.requests[0].json["text"]
    assert "<!" not in text
    assert "crash &lt;!channel&gt;" in text
    assert "&lt;!here&gt; &amp; co" in text


def test_a_mail_server_that_hangs_times_out_and_is_retried(settings: Any) -> None:
    import socket

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_TIMEOUT = 1
    with socket.socket() as silent:  # accepts, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings.EMAIL_HOST, settings.EMAIL_PORT = silent.getsockname()
        began = time.monotonic()
        crash(channel("email", email_to="ops@example.com"))
        took = time.monotonic() - began

    delivery = Delivery.objects.get()
    assert took < 4
    assert delivery.status == "retry"
    assert delivery.last_error.startswith("email failed: ")  # smtplib's exception name


def test_a_grouped_webhook_names_every_subject(private_allowed: None, settings: Any) -> None:
    settings.FLEET_ALERTS_GROUP_AFTER = 1
    rule = AlertRule.objects.create(name="crashes", kind="session_unknown")
    with receiver() as server:
        rule.channels.set([channel("webhook", server.url(), secret=SECRET)])
        for key in ("g1", "g2"):
            Session.objects.create(key=key, agent="koda", status="unknown")
        run_alerts()

    [got] = server.requests
    assert verify(SECRET, got.headers, got.body)
    assert got.json["incident"] is None
    assert got.json["group"] == {
        "rule": {"id": rule.pk, "name": "crashes", "kind": "session_unknown"},
        "count": 2,
        "subjects": ["session g1", "session g2"],
    }
