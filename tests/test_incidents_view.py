"""The incidents page and the header's open-incident count."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from alerts.models import AlertRule, Incident
from tests.test_query_budgets import PAGE_BUDGET, measure

pytestmark = pytest.mark.django_db


def incidents(open_count: int, resolved: int = 0) -> AlertRule:
    rule = AlertRule.objects.create(name="crashes", kind="session_unknown")
    now = timezone.now()
    Incident.objects.bulk_create(
        [
            Incident(rule=rule, subject=f"session open-{n}", opened_at=now - timedelta(minutes=n))
            for n in range(open_count)
        ]
        + [
            Incident(
                rule=rule,
                subject=f"session done-{n}",
                opened_at=now - timedelta(hours=2),
                resolved_at=now - timedelta(hours=1),
            )
            for n in range(resolved)
        ]
    )
    return rule


def badge(html: str) -> str | None:
    found = re.search(r'data-open-incidents="(\d+)"', html)
    return found.group(1) if found else None


def test_the_incidents_page_needs_a_log_in(client: Client) -> None:
    response = client.get("/incidents")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_page_lists_each_incidents_rule_subject_start_and_state_open_first(
    admin_client: Client,
) -> None:
    incidents(open_count=1, resolved=1)

    html = admin_client.get("/incidents").content.decode()

    rows = re.findall(r'<tr class="incident-(\w+)">', html)
    assert rows == ["open", "resolved"]
    assert "session open-0" in html
    assert "session done-0" in html
    assert "crashes" in html
    assert "session became unknown" in html
    assert "<time datetime=" in html


def test_the_header_shows_the_open_count_and_links_to_the_list(admin_client: Client) -> None:
    incidents(open_count=3, resolved=2)

    html = admin_client.get("/").content.decode()

    assert badge(html) == "3"
    assert 'href="/incidents"' in html
    assert 'title="open incidents">3</span>' in html


def test_no_badge_number_when_nothing_is_open(admin_client: Client) -> None:
    html = admin_client.get("/search").content.decode()

    assert badge(html) == "0"
    assert "open incidents" not in html


def test_a_user_who_may_not_see_the_fleet_gets_no_count(
    client: Client, django_user_model: Any
) -> None:
    incidents(open_count=2)
    client.force_login(django_user_model.objects.create_user("nobody", password="pw-nobody-1"))

    response = client.get("/")

    assert response.status_code == 403
    assert badge(response.content.decode()) is None


def test_pages_cost_the_same_with_any_number_of_incidents(admin_client: Client) -> None:
    urls = ["/", "/incidents", "/search?q=x"]
    rule = incidents(open_count=1, resolved=1)
    few = [measure(admin_client, url, PAGE_BUDGET) for url in urls]
    Incident.objects.all().delete()
    rule.delete()
    incidents(open_count=300, resolved=300)
    many = [measure(admin_client, url, PAGE_BUDGET) for url in urls]

    assert few == many
    # The incidents page: the log-in's two, the header's count, the list.
    assert few[1] == (4, 200)


def test_the_fleet_pages_live_poll_refreshes_the_headers_count(admin_client: Client) -> None:
    incidents(open_count=2)

    poll = admin_client.get("/?v=stale", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="fleet-live")
    page = admin_client.get("/").content.decode()

    html = poll.content.decode()
    assert 'id="incidents-link"' in html
    assert 'hx-swap-oob="true"' in html
    assert badge(html) == "2"
    # The full page has the link once, in the header, not swapped out of band.
    assert page.count('id="incidents-link"') == 1
    assert 'data-open-incidents="2">' in page
