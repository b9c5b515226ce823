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
