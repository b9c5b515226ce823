"""Fuzzing: no input yields a 500, and every refusal has the one error shape.

Two generators, both deterministic (derandomized) and bounded:

* schemathesis drives every operation from the API's own OpenAPI document,
  with values that fit the schema and values that break it;
* hypothesis throws arbitrary JSON documents and hostile strings at the write
  endpoints' bodies, keys and query strings.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from fleet.api.api import api as ninja_api
from sessions.models import ApiKey, Session
from tests.api_client import ApiClient

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

schema = schemathesis.openapi.from_dict(ninja_api.get_openapi_schema(path_prefix="/api/v1/"))
schema.app = WSGIHandler()

ERROR_CODES = {
    "malformed",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "gone",
    "too_large",
    "invalid",
    "throttled",
}


def assert_error_shape(status: int, content_type: str, body: bytes) -> None:
    assert status < 500, body[:500]
    if status < 400:
        return
    assert content_type.startswith("application/json"), (status, body[:200])
    document = json.loads(body)
    assert set(document) == {"error"}, document
    error = document["error"]
    assert error["code"] in ERROR_CODES, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert set(error) <= {"code", "message", "field"}


@schemathesis.check
def error_shape(ctx: CheckContext, response: schemathesis.Response, case: Any) -> bool:
    assert_error_shape(
        response.status_code, response.headers.get("content-type", [""])[0], response.content
    )
    return True


@pytest.fixture
def token(db: None, settings: Any) -> Iterator[str]:
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    # schemathesis calls the WSGI handler itself: keep the test's connection
    # (and its transaction) open across requests, as Django's test client does.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield ApiKey.generate(name="fuzz")[1]
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@FUZZ
def test_no_operation_yields_a_500_or_another_error_shape(case: Any, token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, response_schema_conformance, error_shape],
    )


# --- hypothesis: hostile JSON and strings -------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\ud800",
            "\udfff\ud800",
            "\x7f",
            "\n",
            "../../etc/passwd",
            "'; DROP TABLE agent_sessions_session; --",
            "<script>alert(1)</script>",
            "%00",
            "NaN",
            "Infinity",
            "-1",
            "1e309",
            "9" * 40,
            "x" * 300,
            "2026-02-30T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "running",
            "anthropic",
        ]
    ),
)
# Amounts and counts at, just under and past the bounds (sessions.bounds), and
# exponents no decimal context holds: each is stored or refused, never a 500.
BOUND_NUMBERS = st.sampled_from(
    [
        "999999999.999999999",
        "999999999.9999999999",
        "999999999.5",
        "600000000",
        "1e999999999",
        "1E+1000000",
        "-1e999999999",
        "1e-999999999",
        "0E+999999",
        10**12,
        10**12 + 1,
        10**15,
        10**18,
        10**18 + 1,
        2**63,
        1e308,
        999999999.9999999,
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    HOSTILE_TEXT,
    BOUND_NUMBERS,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(HOSTILE_TEXT, children, max_size=4),
    ),
    max_leaves=12,
)
MESSAGE_KEYS = [
    "role",
    "content",
    "message_id",
    "tool_calls",
    "tool_call_id",
    "usage",
    "created_at",
    "agent_name",
    "reasoning",
    "model",
    "status",
]
USAGE_KEYS = [
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "input_tokens",
    "cost_usd",
    "convention",
    # Provider-native shapes (sessions.usage): random mixes must answer 201 or 422.
    "output_tokens",
    "cache_read_input_tokens",
    "input_tokens_details",
    "prompt_tokens_details",
    "promptTokenCount",
    "thoughtsTokenCount",
    "thinking_tokens",
    "total_tokens",
]
COUNTS = SCALARS | st.integers(0, 10**6) | BOUND_NUMBERS
USAGE = st.dictionaries(
    st.sampled_from(USAGE_KEYS),
    COUNTS | st.dictionaries(st.sampled_from(["cached_tokens", "reasoning_tokens", "x"]), COUNTS),
    max_size=6,
)
MESSAGE = st.dictionaries(
    st.sampled_from(MESSAGE_KEYS),
    st.one_of(
        SCALARS,
        st.sampled_from(["user", "assistant", "tool", "system"]),
        USAGE,
        st.lists(st.dictionaries(st.sampled_from(["id", "name", "arguments"]), JSON_VALUES)),
    ),
    max_size=6,
)
APPEND_BODY = st.one_of(
    st.fixed_dictionaries(
        {"messages": st.lists(MESSAGE, max_size=4)},
        optional={
            "session": st.one_of(st.none(), st.dictionaries(HOSTILE_TEXT, SCALARS, max_size=4)),
            "convention": st.one_of(st.sampled_from(["otel", "anthropic"]), HOSTILE_TEXT),
        },
    ),
    JSON_VALUES,
)
KEYS = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="?#"),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["s1", "a/b", "running", "x" * 256, "%00", "%ZZ", "..", "a%2Fb"]),
)


@pytest.fixture
def fuzz_api(token: str) -> ApiClient:
    return ApiClient(token, client=Client(raise_request_exception=False))


def check(response: Any) -> None:
    assert_error_shape(response.status_code, response.get("Content-Type", ""), response.content)


def quoted(key: str) -> str:
    from urllib.parse import quote

    return quote(key, safe="/%")


@pytest.mark.django_db
@FUZZ
@given(key=KEYS, body=APPEND_BODY)
def test_hostile_appends_never_crash(fuzz_api: ApiClient, key: str, body: Any) -> None:
    before = Session.objects.count()

    response = fuzz_api.post(f"sessions/{quoted(key)}/messages", body)

    check(response)
    if response.status_code >= 400:
        assert Session.objects.count() == before


@pytest.mark.django_db
@FUZZ
@given(
    key=KEYS, body=st.one_of(st.dictionaries(HOSTILE_TEXT, JSON_VALUES, max_size=5), JSON_VALUES)
)
def test_hostile_upserts_never_crash(fuzz_api: ApiClient, key: str, body: Any) -> None:
    check(fuzz_api.put(f"sessions/{quoted(key)}", body))


@pytest.mark.django_db
@FUZZ
@given(
    message=st.one_of(MESSAGE, JSON_VALUES),
    compact=st.dictionaries(st.sampled_from(["summary", "keep", "x"]), JSON_VALUES | SCALARS),
    reconcile=st.dictionaries(st.sampled_from(["agent", "except", "x"]), JSON_VALUES | SCALARS),
)
def test_hostile_corrections_never_crash(
    fuzz_api: ApiClient, message: Any, compact: Any, reconcile: Any
) -> None:
    fuzz_api.post("sessions/s1/messages", {"messages": [{"role": "user", "content": "hi"}]})

    check(fuzz_api.put("sessions/s1/messages/last", {"message": message}))
    check(fuzz_api.post("sessions/s1/compact", compact))
    check(fuzz_api.post("reconcile", reconcile))


@pytest.mark.django_db
@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        st.text(alphabet=string.printable, max_size=200),
        st.just('{"messages": [' * 50),
    )
)
def test_raw_bytes_never_crash(fuzz_api: ApiClient, raw: Any) -> None:
    check(fuzz_api.post("sessions/raw/messages", raw=raw))
    check(fuzz_api.put("sessions/raw", raw=raw))


@pytest.mark.django_db
@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "status",
                "agent",
                "limit",
                "cursor",
                "state",
                "view",
                "role",
                "after",
                "q",
                "older_than",
            ]
        ),
        HOSTILE_TEXT,
        max_size=4,
    )
)
def test_hostile_query_strings_never_crash(fuzz_api: ApiClient, params: dict[str, str]) -> None:
    from urllib.parse import quote

    query = "&".join(
        f"{name}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
        for name, value in params.items()
    )
    fuzz_api.post("sessions/q/messages", {"messages": [{"role": "user", "content": "hello"}]})
    for path in ("sessions", "sessions/stuck", "sessions/running", "sessions/q/messages", "search"):
        check(fuzz_api.call("GET", f"/api/v1/{path}?{query}"))


# --- numbers past what the parsers, columns and totals hold -------------------------

# JSON number literals that Python parses to inf (1e400) or that no decimal
# context holds, placed where any JSON value may go; sent as raw text, since
# json.dumps would write them as the non-JSON Infinity.
WILD_LITERALS = st.sampled_from(["1e400", "-1e400", "1E999999999", "1e-400", "9" * 400, "0.0"])
PLACES = st.sampled_from(
    [
        '{"messages": [{"role": "assistant", "content": null, '
        '"tool_calls": [{"id": "a", "name": "f", "arguments": [N]}]}]}',
        '{"messages": [{"role": "assistant", "content": null, '
        '"tool_calls": [{"id": "a", "name": "f", "arguments": {"x": {"y": N}}}]}]}',
        '{"messages": [{"role": "assistant", "content": "x", "usage": {"cost_usd": N}}]}',
        '{"messages": [{"role": "assistant", "content": "x", "usage": {"prompt_tokens": N}}]}',
        '{"messages": [{"role": "user", "content": "x"}], "session": {"metadata": {"a": N}}}',
    ]
)
SESSION_PLACES = st.sampled_from(
    ['{"cost_usd": N}', '{"prompt_tokens": N}', '{"metadata": {"a": N}}', '{"turns": N}']
)


@pytest.mark.django_db
@FUZZ
@given(place=PLACES, session_place=SESSION_PLACES, literal=WILD_LITERALS)
def test_numbers_no_column_holds_never_crash(
    fuzz_api: ApiClient, place: str, session_place: str, literal: str
) -> None:
    fuzz_api.post("sessions/n/messages", {"messages": [{"role": "user", "content": "hi"}]})

    check(fuzz_api.post("sessions/n/messages", raw=place.replace("N", literal)))
    patch = json.loads(place.replace("N", "0"))["messages"][0]
    raw_patch = json.dumps({"message": patch}).replace(": 0", ": " + literal, 1)
    check(fuzz_api.put("sessions/n/messages/last", raw=raw_patch))
    check(fuzz_api.put("sessions/n", raw=session_place.replace("N", literal)))
    for path in ("sessions/n", "sessions", "sessions/n/messages", "sessions/n/usage", "fleet"):
        check(fuzz_api.get(path))


@pytest.mark.django_db
@FUZZ
@given(
    key=st.one_of(st.sampled_from(["theirs", "new", "a/b"]), KEYS),
    agent=st.one_of(st.none(), st.sampled_from(["bot-a", "bot-b", ""]), HOSTILE_TEXT),
    messages=st.one_of(st.just([{"role": "user", "content": "x"}]), st.lists(MESSAGE, max_size=3)),
    body=st.one_of(st.just({}), APPEND_BODY),
)
def test_a_scoped_key_never_writes_a_session_of_another_agent(
    token: str, key: str, agent: Any, messages: Any, body: Any
) -> None:
    """Whatever the body says, a key scoped to bot-a leaves bot-b's session alone and
    every session it makes is bot-a's."""
    scoped, _ = ApiKey.objects.get_or_create(
        name="fuzz-scoped", defaults={"hashed_key": ApiKey.hash_token(token + "-scoped")}
    )
    ApiKey.objects.filter(pk=scoped.pk).update(agents=["bot-a"])
    theirs, _ = Session.objects.get_or_create(key="theirs", defaults={"agent": "bot-b"})
    if isinstance(body, dict):
        session = body.get("session") if isinstance(body.get("session"), dict) else {}
        if agent is not None:
            session = {**session, "agent": agent}
        body = {**body, "messages": body.get("messages", messages), "session": session}
    api = ApiClient(token + "-scoped", client=Client(raise_request_exception=False))

    response = api.post(f"sessions/{quoted(key)}/messages", body)

    check(response)
    assert Session.objects.get(pk=theirs.pk).last_seq == 0
    assert set(Session.objects.exclude(pk=theirs.pk).values_list("agent", flat=True)) <= {"bot-a"}


@pytest.mark.django_db
@FUZZ
@given(
    writes=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["append", "put", "update-last"]),
            st.one_of(BOUND_NUMBERS, st.sampled_from(["0.5", "499999999.999999999"])),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_totals_driven_to_their_bounds_never_crash_a_read(
    fuzz_api: ApiClient, writes: list[tuple[str, str, Any]]
) -> None:
    session = {"agent": "x", "model": "gpt-4o"}
    for key, how, number in writes:
        is_tokens = isinstance(number, int)
        usage = {"prompt_tokens": number} if is_tokens else {"cost_usd": number}
        message = {"role": "assistant", "content": "x", "usage": usage}
        if how == "append":
            body = {"messages": [message], "session": session}
            check(fuzz_api.post(f"sessions/{key}/messages", body))
        elif how == "put":
            check(fuzz_api.put(f"sessions/{key}", {**session, **usage}))
        else:
            check(fuzz_api.put(f"sessions/{key}/messages/last", {"message": message}))
    for key in ("a", "b"):
        for path in (f"sessions/{key}", f"sessions/{key}/messages", f"sessions/{key}/usage"):
            check(fuzz_api.get(path))
    for path in ("sessions", "fleet", "search?q=x"):
        response = fuzz_api.get(path)
        check(response)
        assert response.status_code == 200
