"""Chunked request bodies reach Django with their length (fleet/chunked.py).

The server-level test (gunicorn, a real chunked request) is in test_serve.py;
these drive the WSGI wrapper with the environ a server hands it.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from fleet.chunked import ChunkedBodyMiddleware


def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{length}:".encode() + body]


def call(body: bytes, **environ: Any) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/sessions/s/messages",
        "wsgi.input": io.BytesIO(body),
        "HTTP_TRANSFER_ENCODING": "chunked",
    }
    chunks = ChunkedBodyMiddleware(echo_app)({**base, **environ}, start_response)
    return seen["status"], seen["headers"], b"".join(chunks)


def test_a_terminated_chunked_body_is_read_with_its_length() -> None:
    status, _, body = call(b'{"messages": []}', **{"wsgi.input_terminated": True})

    assert status == "200 OK"
    assert body == b'16:{"messages": []}'


def test_a_chunked_body_over_the_limit_is_413_in_the_error_shape(settings: Any) -> None:
    settings.FLEET_API_MAX_BODY_BYTES = 1024

    status, headers, body = call(b"x" * 1025, **{"wsgi.input_terminated": True})

    assert status.startswith("413 ")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "too_large"


def test_a_body_exactly_at_the_limit_is_read(settings: Any) -> None:
    settings.FLEET_API_MAX_BODY_BYTES = 1024

    status, _, body = call(b"x" * 1024, **{"wsgi.input_terminated": True})

    assert status == "200 OK"
    assert body.startswith(b"1024:")


def test_a_server_that_does_not_dechunk_gets_411_in_the_error_shape() -> None:
    status, headers, body = call(b"5\r\nhello\r\n0\r\n\r\n")

    assert status == "411 Length Required"
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "length_required"
    assert "Content-Length" in error["message"]


@pytest.mark.parametrize("environ", [{"CONTENT_LENGTH": "5"}, {"HTTP_TRANSFER_ENCODING": ""}])
def test_bodies_with_a_length_pass_untouched(environ: dict[str, str]) -> None:
    status, _, body = call(b"hello", **{"CONTENT_LENGTH": "5", **environ})

    assert (status, body) == ("200 OK", b"5:hello")


def test_the_production_entry_point_is_wrapped() -> None:
    from fleet.wsgi import application

    assert isinstance(application, ChunkedBodyMiddleware)


def test_a_wsgiref_server_like_runserver_answers_411_not_500() -> None:
    """runserver is wsgiref, which refuses hop-by-hop headers from the application."""
    import http.client
    import socket
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, ChunkedBodyMiddleware(echo_app), handler_class=Quiet)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    # The whole request in one write: the server answers 411 after the headers and
    # closes, so a client sending the chunks in later writes (http.client does) can
    # meet a broken pipe instead of the answer when the server is quick.
    body = b'{"messages": []}'
    raw = (
        b"POST /api/v1/sessions/s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            sock.sendall(raw)
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
    finally:
        thread.join(10)
        server.server_close()

    assert response.status == 411, body
    assert json.loads(body)["error"]["code"] == "length_required"


# --- OTLP: the refusal is an OTLP Status in the request's encoding ------------


def _otlp_call(
    body: bytes, content_type: str, token: str, **environ: Any
) -> tuple[str, dict[str, str], bytes]:
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/otlp/v1/traces",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_TYPE": content_type,
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }
    app = ChunkedBodyMiddleware(WSGIHandler())
    # As Django's test client does: the test's database connection stays open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        chunks = app({**base, **environ}, start_response)
        content = b"".join(chunks)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return seen["status"], seen["headers"], content


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_an_otlp_chunked_body_over_the_limit_is_the_same_413_as_a_known_length_one(
    settings: Any, content_type: str
) -> None:
    from google.protobuf import json_format
    from google.rpc.status_pb2 import Status

    from sessions.models import ApiKey

    settings.FLEET_API_MAX_BODY_BYTES = 1024
    token = ApiKey.generate(name="otel")[1]
    body = b"\x0a" * 2048

    answers = [
        _otlp_call(body, content_type, token, CONTENT_LENGTH=str(len(body))),
        _otlp_call(
            body,
            content_type,
            token,
            HTTP_TRANSFER_ENCODING="chunked",
            **{"wsgi.input_terminated": True},
        ),
    ]

    statuses = []
    for status, headers, content in answers:
        assert status.startswith("413 ")
        assert headers["Content-Type"] == content_type
        if content_type == "application/json":
            statuses.append(json_format.Parse(content, Status()))
        else:
            statuses.append(Status.FromString(content))
    known, chunked = statuses
    assert chunked == known
    assert known.message == "the body is larger than the limit of 1024 bytes"


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_an_otlp_chunked_body_a_server_cannot_dechunk_is_a_411_status(content_type: str) -> None:
    from google.protobuf import json_format
    from google.rpc.status_pb2 import Status

    status, headers, content = call(
        b"5\r\nhello\r\n0\r\n\r\n", PATH_INFO="/otlp/v1/logs", CONTENT_TYPE=content_type
    )

    assert status == "411 Length Required"
    assert headers["Content-Type"] == content_type
    if content_type == "application/json":
        found = json_format.Parse(content, Status())
    else:
        found = Status.FromString(content)
    assert "Content-Length" in found.message
