"""GET /budgets and /budgets/check: spend, remaining and exceeded, through key scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from sessions import services
from sessions.models import ApiKey, Budget, Message
from tests.api_client import ApiClient, assert_error, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(db: None) -> ApiClient:
    return ApiClient(make_key())


def scoped(*agents: str) -> ApiClient:
    return ApiClient(ApiKey.generate(name=f"scoped-{'-'.join(agents)}", agents=agents)[1])


def spend(agent: str, cost: str, *, model: str = "gpt-4o", key: str = "") -> None:
    services.messages_append(
        key=key or f"{agent}-{model}",
        session={"agent": agent, "model": model, "channel": "cli", "project_root": "/src/app"},
        messages=[{"role": "assistant", "content": "x", "usage": {"cost_usd": cost}}],
    )


def budget(name: str, amount: str = "10", **scope: Any) -> Budget:
    return Budget.objects.create(name=name, amount_usd=Decimal(amount), period="day", **scope)


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["name"] for item in response.json()["items"]]


def test_the_list_answers_every_budget_with_its_spend(api: ApiClient) -> None:
    budget("fleet", "5")
    budget("koda", "1", agent="koda")
    spend("koda", "1.5")
    spend("zeph", "0.25")

    answer = api.get("budgets").json()

    assert answer["time_zone"] == "UTC"
    assert (answer["exceeded"], answer["remaining_usd"]) == (True, "0.000000000")
    fleet, koda = answer["items"]
    assert fleet["name"] == "fleet"
    assert fleet["scope"] == {"agent": "", "model": "", "channel": "", "project": ""}
    assert (fleet["spent_usd"], fleet["remaining_usd"]) == ("1.750000000", "3.250000000")
    assert (fleet["warning"], fleet["exceeded"]) == (False, False)
    assert (koda["spent_usd"], koda["remaining_usd"], koda["exceeded"]) == (
        "1.500000000",
        "0.000000000",
        True,
    )
    assert fleet["period"] == "day"
    assert fleet["period_start"].endswith("T00:00:00Z")
    assert fleet["api_calls"] == 2


def test_no_budgets_answers_an_empty_list(api: ApiClient) -> None:
    assert api.get("budgets").json() == {
        "time_zone": "UTC",
        "exceeded": False,
        "remaining_usd": None,
        "items": [],
    }


def test_check_answers_the_budgets_that_apply_to_the_call(api: ApiClient) -> None:
    budget("fleet", "100")
    budget("koda", "1", agent="koda")
    budget("koda-o3", "50", agent="koda", model="o3")
    budget("zeph", "1", agent="zeph")
    budget("slack", "1", channel="slack")
    spend("koda", "2")

    exact = api.get("budgets/check", agent="koda", model="gpt-4o", channel="cli", project="/a")
    by_agent = api.get("budgets/check", agent="koda")

    assert names(exact) == ["fleet", "koda"]
    assert (exact.json()["exceeded"], exact.json()["remaining_usd"]) == (True, "0.000000000")
    assert names(by_agent) == ["fleet", "koda", "koda-o3", "slack"]


def test_the_agent_can_stop_before_it_spends_and_fleet_still_records(api: ApiClient) -> None:
    budget("koda", "1", agent="koda")
    spend("koda", "0.6", key="k")
    assert api.get("budgets/check", agent="koda").json()["exceeded"] is False

    spend("koda", "0.6", key="k")  # past the amount: recorded all the same
    answer = api.get("budgets/check", agent="koda").json()

    assert answer["exceeded"] is True
    assert answer["items"][0]["spent_usd"] == "1.200000000"
    assert Message.objects.count() == 2


def test_unpriced_calls_are_shown_apart(api: ApiClient) -> None:
    budget("fleet")
    services.messages_append(
        key="u",
        messages=[
            {"role": "assistant", "content": "x", "model": "acme-9", "usage": {"prompt_tokens": 5}}
        ],
    )

    item = api.get("budgets").json()["items"][0]

    assert (item["spent_usd"], item["unpriced_calls"], item["api_calls"]) == ("0.000000000", 1, 1)


@override_settings(TIME_ZONE="America/New_York")
def test_periods_follow_the_configured_time_zone(api: ApiClient) -> None:
    budget("fleet")

    answer = api.get("budgets").json()

    assert answer["time_zone"] == "America/New_York"
    start = datetime.fromisoformat(answer["items"][0]["period_start"])
    assert start.astimezone(UTC).hour in (4, 5)  # local midnight, EDT or EST


def test_a_scoped_key_sees_its_agents_budgets_and_those_naming_no_agent() -> None:
    budget("fleet")
    budget("mine", agent="koda")
    budget("theirs", agent="zeph")
    budget("cli", channel="cli")
    koda = scoped("koda")

    assert names(koda.get("budgets")) == ["cli", "fleet", "mine"]
    assert names(koda.get("budgets/check", agent="koda")) == ["cli", "fleet", "mine"]
    assert names(koda.get("budgets/check", model="o3")) == ["cli", "fleet", "mine"]


def test_a_scoped_key_checking_another_agent_is_403() -> None:
    budget("theirs", agent="zeph")

    response = scoped("koda").get("budgets/check", agent="zeph")

    assert_error(response, 403, "forbidden", "agent")


@pytest.mark.parametrize(
    ("name", "value"),
    [("channel", "fax"), ("agent", "a\nb"), ("model", "m" * 256), ("project", "p" * 1025)],
)
def test_a_check_with_a_value_no_usage_can_carry_is_422(
    api: ApiClient, name: str, value: str
) -> None:
    assert_error(api.get("budgets/check", **{name: value}), 422, "invalid", name)


def test_without_a_key_the_budgets_answer_401() -> None:
    assert ApiClient(None).get("budgets").status_code == 401
    assert ApiClient(None).get("budgets/check").status_code == 401


def test_the_forecast_is_the_period_at_its_rate_so_far(api: ApiClient) -> None:
    budget("fleet", "100")
    now = datetime.now(UTC)
    spend("koda", "2")

    item = api.get("budgets").json()["items"][0]

    start = datetime.fromisoformat(item["period_start"])
    elapsed = max(now - start, timedelta(hours=1))
    expected = Decimal(2) * Decimal(86400) / Decimal(elapsed.total_seconds())
    assert abs(Decimal(item["forecast_usd"]) - expected) < Decimal("0.01")
