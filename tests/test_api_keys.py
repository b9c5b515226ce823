"""API keys: bearer auth, hashing, revocation, last use; keys and logins stay apart."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from sessions.errors import Conflict, InvalidInput
from sessions.models import ApiKey, Session
from tests.api_client import ApiClient, assert_error, make_key

pytestmark = pytest.mark.django_db

BODY = {"messages": [{"role": "user", "content": "hi"}]}


def test_a_key_is_stored_only_as_its_hash_with_a_prefix_to_recognise_it() -> None:
    key, token = ApiKey.generate(name="ci")

    assert token.startswith("fleet_")
    assert len(token) >= 40
    assert key.hashed_key == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {key.name, key.prefix, key.hashed_key}
    assert token.startswith(key.prefix)
    assert ApiKey.objects.get(pk=key.pk).created_at is not None


def test_two_keys_never_share_a_secret() -> None:
    _, first = ApiKey.generate(name="a")
    _, second = ApiKey.generate(name="b")

    assert first != second


def test_a_duplicate_or_blank_name_is_refused() -> None:
    ApiKey.generate(name="ci")

    with pytest.raises(Conflict):
        ApiKey.generate(name="ci")
    with pytest.raises(InvalidInput):
        ApiKey.generate(name="  ")
    with pytest.raises(InvalidInput):
        ApiKey.generate(name="x" * 101)
    assert ApiKey.objects.count() == 1


def test_a_valid_key_opens_the_api() -> None:
    api = ApiClient(make_key())

    assert api.post("sessions/s1/messages", BODY).status_code == 201


def test_no_key_is_401_with_the_error_shape_and_writes_nothing() -> None:
    response = ApiClient(None).post("sessions/s1/messages", BODY)

    error = assert_error(response, 401, "unauthorized")
    assert "Bearer" in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong",
        "Bearer ",
        "Basic dXNlcjpwdw==",
        "Token fleet_x",
        "Bearer " + "x" * 5000,
        "Bearer fleet_\u00e9\u00e8",
    ],
)
def test_a_wrong_key_is_401(header: str) -> None:
    make_key()
    client = ApiClient(None)

    response = client.call("POST", "sessions/s1/messages", BODY, headers={"Authorization": header})

    assert_error(response, 401, "unauthorized")
    assert not Session.objects.exists()


def test_a_revoked_key_is_401() -> None:
    key, token = ApiKey.generate(name="old")
    assert key.revoke() is True

    response = ApiClient(token).get("sessions")

    assert_error(response, 401, "unauthorized")
    assert key.revoke() is False


def test_every_endpoint_needs_a_key() -> None:
    anonymous = ApiClient(None)
    for method, path in [
        ("GET", "sessions"),
        ("GET", "sessions/running"),
        ("GET", "sessions/stuck"),
        ("PUT", "sessions/s"),
        ("GET", "sessions/s"),
        ("DELETE", "sessions/s"),
        ("POST", "sessions/s/messages"),
        ("GET", "sessions/s/messages"),
        ("DELETE", "sessions/s/messages"),
        ("PUT", "sessions/s/messages/last"),
        ("DELETE", "sessions/s/messages/last"),
        ("POST", "sessions/s/compact"),
        ("POST", "sessions/s/messages/archive"),
        ("GET", "sessions/s/usage"),
        ("POST", "reconcile"),
        ("GET", "search?q=x"),
        ("GET", "fleet"),
    ]:
        response = anonymous.call(method, path, {})
        assert_error(response, 401, "unauthorized")


def test_use_is_recorded_at_most_once_a_minute() -> None:
    key, token = ApiKey.generate(name="ci")
    api = ApiClient(token)

    api.get("sessions")
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    api.get("sessions")
    second = ApiKey.objects.get(pk=key.pk).last_used_at
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    api.get("sessions")
    third = ApiKey.objects.get(pk=key.pk).last_used_at

    assert first is not None
    assert second == first
    assert third > first - timedelta(seconds=1)
    assert third > timezone.now() - timedelta(seconds=30)


def test_authenticate_does_not_write_when_recently_used(django_assert_num_queries) -> None:
    key, token = ApiKey.generate(name="ci")
    ApiKey.authenticate(token)

    with django_assert_num_queries(1):
        assert ApiKey.authenticate(token) == key


def test_a_dashboard_login_does_not_open_the_api(admin_client: Client) -> None:
    api = ApiClient(None, client=admin_client)

    assert_error(api.get("sessions"), 401, "unauthorized")
    assert_error(api.post("sessions/s1/messages", BODY), 401, "unauthorized")
    assert not Session.objects.exists()


def test_an_api_key_does_not_open_the_dashboard_or_the_admin() -> None:
    token = make_key()
    client = Client()
    headers = {"Authorization": f"Bearer {token}"}

    for url in ("/admin/", "/admin/agent_sessions/session/", "/"):
        response = client.get(url, headers=headers)
        assert response.status_code in (301, 302), url
        assert "login" in response["Location"] or response["Location"] == "/admin/"
    assert (
        client.get("/admin/", headers=headers, follow=True)
        .request["PATH_INFO"]
        .startswith("/admin/login")
    )


def test_bearer_calls_need_no_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    api = ApiClient(make_key(), client=client)

    assert api.post("sessions/s1/messages", BODY).status_code == 201
    assert api.put("sessions/s1", {"name": "n"}).status_code == 200
    assert api.delete("sessions/s1").status_code == 204


# --- Bad-key throttle: FLEET_API_BAD_KEY_LIMIT wrong keys per address and window ---

WRONG = {"Authorization": "Bearer fleet_wrong"}


def send_wrong_keys(count: int, **extra: str) -> None:
    client = Client(**extra)
    for _ in range(count):
        assert_error(
            ApiClient(None, client=client).call("GET", "sessions", headers=WRONG),
            401,
            "unauthorized",
        )


def test_many_wrong_keys_from_one_address_are_answered_429(settings) -> None:
    settings.FLEET_API_BAD_KEY_LIMIT = 5
    send_wrong_keys(5)

    response = ApiClient(None).call("GET", "sessions", headers=WRONG)

    error = assert_error(response, 429, "throttled")
    assert "too many wrong API keys" in error["message"]
    assert response["Retry-After"] == str(settings.FLEET_API_BAD_KEY_WINDOW)


def test_a_throttled_address_is_refused_even_with_a_valid_key_and_costs_no_query(
    settings, django_assert_num_queries
) -> None:
    settings.FLEET_API_BAD_KEY_LIMIT = 5
    api = ApiClient(make_key())
    send_wrong_keys(5)

    with django_assert_num_queries(0):
        response = api.post("sessions/s1/messages", BODY)

    assert_error(response, 429, "throttled")
    assert not Session.objects.exists()


def test_the_throttle_holds_one_address_only(settings) -> None:
    settings.FLEET_API_BAD_KEY_LIMIT = 5
    send_wrong_keys(5)

    response = ApiClient(make_key(), client=Client(REMOTE_ADDR="192.0.2.8")).get("sessions")

    assert response.status_code == 200


def test_the_throttle_ends_after_its_window(settings) -> None:
    settings.FLEET_API_BAD_KEY_LIMIT = 2
    settings.FLEET_API_BAD_KEY_WINDOW = 1
    api = ApiClient(make_key())
    send_wrong_keys(2)
    assert api.get("sessions").status_code == 429

    time.sleep(1.2)

    assert api.get("sessions").status_code == 200


def test_requests_without_a_key_and_valid_keys_do_not_count(settings) -> None:
    settings.FLEET_API_BAD_KEY_LIMIT = 3
    api = ApiClient(make_key())
    for _ in range(10):
        assert_error(ApiClient(None).get("sessions"), 401, "unauthorized")
        assert api.get("sessions").status_code == 200


def test_the_throttle_can_be_turned_off(settings) -> None:
    settings.FLEET_API_BAD_KEY_LIMIT = 0
    send_wrong_keys(30)

    assert ApiClient(make_key()).get("sessions").status_code == 200
