"""The OpenAPI document and the interactive docs page (bundled assets, no CDN)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from sessions.choices import TOKEN_FIELDS
from sessions.fields import (
    MESSAGE_CLIENT_FIELDS,
    MESSAGE_INPUT_KEYS,
    MESSAGE_JSON_KEYS,
    MESSAGE_SERVER_FIELDS,
    MESSAGE_TRUSTED_FIELDS,
    MESSAGE_USAGE_FIELDS,
)
from sessions.inputs import READ_ONLY_SESSION_FIELDS, SESSION_FIELDS
from sessions.models import Message, Session
from sessions.shapes import message_json, session_json

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/api/v1/sessions/{key}": {"put", "get", "delete"},
    "/api/v1/sessions": {"get"},
    "/api/v1/sessions/running": {"get"},
    "/api/v1/sessions/stuck": {"get"},
    "/api/v1/sessions/{key}/messages": {"post", "get", "delete"},
    "/api/v1/sessions/{key}/messages/last": {"get", "put", "delete"},
    "/api/v1/sessions/{key}/pending-tool-calls": {"get"},
    "/api/v1/sessions/{key}/compact": {"post"},
    "/api/v1/sessions/{key}/messages/archive": {"post"},
    "/api/v1/sessions/{key}/usage": {"get"},
    "/api/v1/messages/recent": {"get"},
    "/api/v1/compaction-stats": {"get"},
    "/api/v1/reconcile": {"post"},
    "/api/v1/search": {"get"},
    "/api/v1/fleet": {"get"},
    "/api/v1/budgets": {"get"},
    "/api/v1/budgets/check": {"get"},
}


def test_the_openapi_document_lists_every_endpoint_of_the_design(client: Client) -> None:
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    paths = {path: set(operations) for path, operations in schema["paths"].items()}
    assert paths == ENDPOINTS
    schemes = schema["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())


def test_the_openapi_document_lists_403_where_a_key_scope_can_refuse(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    forbidden = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "403" in operation["responses"]
    }

    # Every write, every read of one session, and a budget check naming another
    # agent; lists, search and totals filter.
    expected = {
        (path, method)
        for path, methods in ENDPOINTS.items()
        for method in methods
        if method != "get" or path.startswith("/api/v1/sessions/{key}")
    } | {("/api/v1/budgets/check", "get")}
    assert forbidden == expected
    assert "forbidden (403" in str(schema["components"]["schemas"]["ErrorDetail"])


NEW_READS = {
    ("/api/v1/messages/recent", "get"),
    ("/api/v1/sessions/{key}/messages/last", "get"),
    ("/api/v1/sessions/{key}/pending-tool-calls", "get"),
    ("/api/v1/compaction-stats", "get"),
    ("/api/v1/sessions", "get"),
    ("/api/v1/budgets/check", "get"),
}


@pytest.mark.parametrize(("path", "method"), sorted(NEW_READS))
def test_the_reads_agents_resume_with_are_described_with_an_example(
    client: Client, path: str, method: str
) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"][path][method]

    assert operation["summary"]
    assert len(operation["description"]) > 40
    answer = operation["responses"]["200"]["content"]["application/json"]
    assert "example" in answer or "examples" in answer, answer
    assert "422" in operation["responses"]
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            assert parameter.get("description"), parameter["name"]


def test_the_role_and_limit_parameters_state_their_bounds(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    recent = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/api/v1/messages/recent"]["get"]["parameters"]
    }

    assert recent["role"]["enum"] == ["system", "user", "assistant", "tool"]
    assert (recent["limit"]["minimum"], recent["limit"]["maximum"]) == (1, 1000)


def test_the_put_documents_recreate(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    recreate = schema["components"]["schemas"]["SessionFieldsIn"]["properties"]["recreate"]
    put = schema["paths"]["/api/v1/sessions/{key}"]["put"]

    assert recreate["type"] == "boolean"
    assert "recreate" in put["description"]


def test_the_openapi_document_explains_the_anthropic_convention(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()

    append = schema["paths"]["/api/v1/sessions/{key}/messages"]["post"]
    assert '"convention": "anthropic"' in append["description"]
    assert "cache" in append["description"]
    assert "convention" in schema["components"]["schemas"]["AppendIn"]["properties"]


def test_the_openapi_document_states_the_bounds_of_numbers(client: Client) -> None:
    from sessions.bounds import MAX_COUNT, MAX_DURATION_MS, MAX_TOKENS, MAX_TOTAL, MAX_USD

    schema = client.get("/api/v1/openapi.json").json()
    append = schema["components"]["schemas"]["AppendIn"]["properties"]["messages"]
    usage = append["items"]["properties"]["usage"]["anyOf"][0]["properties"]
    session = schema["components"]["schemas"]["SessionFieldsIn"]["properties"]

    assert usage["prompt_tokens"]["maximum"] == MAX_TOKENS
    for name in ("duration_ms", "time_to_first_token_ms"):
        assert append["items"]["properties"][name]["maximum"] == MAX_DURATION_MS
    assert usage["cost_usd"]["anyOf"][0]["exclusiveMaximum"] == int(MAX_USD)
    assert session["prompt_tokens"]["maximum"] == MAX_TOTAL
    assert session["turns"]["maximum"] == MAX_COUNT
    assert "below 1000000000 once rounded" in session["cost_usd"]["description"]


def test_the_openapi_document_states_the_size_caps_and_lists_leave_large_fields_out(
    client: Client, settings: Any
) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    text = json.dumps(schema)
    for setting in ("FLEET_MAX_METADATA_BYTES", "FLEET_MAX_TODO_CHARS", "FLEET_MAX_GOAL_CHARS"):
        assert f"{setting} " in text
        assert f"(default {getattr(settings, setting)})" in text
    components = schema["components"]["schemas"]
    assert {"metadata", "todo"} <= components["SessionOut"]["properties"].keys()
    summary = components["SessionSummaryOut"]["properties"]
    assert not {"metadata", "todo"} & summary.keys()
    assert "goal_text" in summary
    items = components["SessionListOut"]["properties"]["items"]["items"]
    assert items["$ref"].endswith("/SessionSummaryOut")


# --- one list of message fields (sessions/fields.py) ---------------------------------
# A message field is added in the model, its migration and the API's schema;
# everything else derives from the model and sessions.fields. These fail when
# a field reaches the model but not the schema clients read.


def test_every_message_field_is_a_clients_the_servers_or_part_of_usage() -> None:
    stored = [field.name for field in Message._meta.concrete_fields]
    groups = [MESSAGE_CLIENT_FIELDS, MESSAGE_SERVER_FIELDS, MESSAGE_USAGE_FIELDS]

    assert sorted(name for group in groups for name in group) == sorted(stored)
    assert set(MESSAGE_TRUSTED_FIELDS) <= set(MESSAGE_SERVER_FIELDS)


def test_the_openapi_document_accepts_every_message_field_a_client_writes(
    client: Client,
) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    message = components["AppendIn"]["properties"]["messages"]["items"]
    usage = message["properties"]["usage"]["anyOf"][0]["properties"]
    patch = components["UpdateLastIn"]["properties"]["message"]

    assert set(message["properties"]) == MESSAGE_INPUT_KEYS
    assert set(patch["properties"]) == MESSAGE_INPUT_KEYS
    assert set(TOKEN_FIELDS) | {"cost_usd"} <= set(usage)


def test_the_openapi_document_answers_every_field_of_a_message(client: Client) -> None:
    components = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    stored = Message(seq=1, role="assistant", cost_source="computed", cost_usd=Decimal(1))

    assert list(message_json(stored)) == list(MESSAGE_JSON_KEYS)
    # The response schema drops what it does not name: it must name every key.
    assert set(components["MessageOut"]["properties"]) == set(MESSAGE_JSON_KEYS)
    usage = set(components["UsageOut"]["properties"])
    assert usage == {*MESSAGE_USAGE_FIELDS, "total_tokens"}
    assert set(message_json(stored)["usage"]) == usage


def test_the_documented_message_example_shows_every_field_of_a_message(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    last = schema["paths"]["/api/v1/sessions/{key}/messages/last"]["get"]
    example = last["responses"]["200"]["content"]["application/json"]["example"]

    assert set(example) == set(MESSAGE_JSON_KEYS)


def test_the_openapi_document_names_every_session_field(client: Client) -> None:
    # Session fields still have their lists (sessions.inputs, sessions.shapes,
    # the API's schemas): these fail when the model gains a field one misses.
    components = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    stored = {field.name for field in Session._meta.concrete_fields}

    assert stored <= SESSION_FIELDS | READ_ONLY_SESSION_FIELDS
    # `recreate` is an instruction to the PUT, not a stored field.
    assert set(components["SessionFieldsIn"]["properties"]) == SESSION_FIELDS | {"recreate"}
    shown = set(session_json(Session(key="k")))
    assert shown == stored - {"id"} | {"total_tokens"}
    assert set(components["SessionOut"]["properties"]) == shown


def test_the_docs_page_uses_bundled_assets_and_no_cdn(client: Client) -> None:
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui-bundle.js" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "cdn" not in page.lower()
    # Swagger UI would otherwise fetch a validator badge from swagger.io.
    assert '"validatorUrl": null' in page
    for asset in re.findall(r"""(?:src|href)="/static/([^"]+)""", page):
        assert finders.find(asset), asset


def test_every_operation_documents_the_throttle_and_its_error_code(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "429" in operation["responses"], (method, path)
    detail = schema["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert "throttled (429)" in detail["description"]
    assert "429 too many wrong keys" in schema["info"]["description"]


def test_every_usage_example_in_the_openapi_document_is_accepted_as_documented(
    client: Client,
) -> None:
    from tests.api_client import ApiClient, make_key

    schema = client.get("/api/v1/openapi.json").json()
    append = schema["components"]["schemas"]["AppendIn"]["properties"]["messages"]
    usage = append["items"]["properties"]["usage"]["anyOf"][0]
    api = ApiClient(make_key())

    assert len(usage["examples"]) >= 7
    for text in ("OpenAI Chat Completions", "Anthropic Messages", "Gemini", "koda"):
        assert text in usage["description"]
    for index, example in enumerate(usage["examples"]):
        message = {"role": "assistant", "content": "ok", "usage": example}
        response = api.post(f"sessions/s{index}/messages", {"messages": [message]})
        assert response.status_code == 201, (example, response.content)
        stored = response.json()["session"]
        assert (stored["prompt_tokens"], stored["completion_tokens"]) == (1200, 300), example
