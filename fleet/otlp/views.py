"""The OTLP/HTTP receiver: ``POST /otlp/v1/traces`` and ``POST /otlp/v1/logs``.

So that ``OTEL_EXPORTER_OTLP_ENDPOINT=https://fleet.example/otlp`` works with
any OpenTelemetry SDK. Answers follow the OTLP/HTTP spec: 200 with the
``Export*ServiceResponse`` in the request's encoding (``partial_success`` when
records were rejected, which the client must not retry); failures carry a
``google.rpc.Status`` in that encoding: 400 undecodable, 401 no or bad key,
403 read-only key, 413 too large (compressed or decompressed), 415 unknown
Content-Type or Content-Encoding. Overload follows the spec's two retryable
answers, both with ``Retry-After``: 429 when *this client* should slow down
(its key past ``FLEET_OTLP_EXPORTS_PER_MINUTE``, or its address blocked for
wrong keys), 503 when *the server* cannot take it now (the database busy,
locked or unreachable; a retry duplicates nothing). Keys and scopes are the
JSON API's. The mapping (GenAI spans and events; coding agents' log events)
is ``sessions.otlp``; docs/OTLP.md has the tables.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from ninja.errors import Throttled
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from fleet.api import throttle
from fleet.otlp import decode
from fleet.otlp.decode import BadRequest
from sessions import otlp
from sessions.errors import Forbidden
from sessions.models import ApiKey
from sessions.scopes import KeyScope

logger = logging.getLogger(__name__)

CONTENT_TYPES = {"application/x-protobuf": "protobuf", "application/json": "json"}
# google.rpc.Code of each refusal (the spec lets clients ignore it; it helps logs).
RPC_CODES = {400: 3, 401: 16, 403: 7, 411: 3, 413: 8, 415: 3, 429: 8, 503: 14, 500: 13}
PATH_PREFIX = "/otlp/"  # the receiver's paths (fleet/urls.py)


def _encoding_of(content_type: str) -> str | None:
    return CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())


def _encoding(request: HttpRequest) -> str | None:
    return _encoding_of(request.META.get("CONTENT_TYPE", ""))


def _serialize(message: Message, encoding: str) -> HttpResponse:
    if encoding == "json":
        body = json_format.MessageToJson(message, indent=None).encode()
        return HttpResponse(body, content_type="application/json")
    return HttpResponse(message.SerializeToString(), content_type="application/x-protobuf")


def _failure(
    status: int, message: str, encoding: str, *, retry_after: int | None = None
) -> HttpResponse:
    response = _serialize(Status(code=RPC_CODES.get(status, 2), message=message), encoding)
    response.status_code = status
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="fleet"'
    return response


def refusal(status: int, message: str, content_type: str) -> HttpResponse:
    """A refusal made before the view runs (``fleet.chunked``: a chunked body
    over the limit, or one the server cannot de-chunk), in the shape the view's
    own refusals have: the Status in the request's encoding."""
    return _failure(status, message, _encoding_of(content_type) or "protobuf")


class Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _key(request: HttpRequest) -> ApiKey:
    """The request's key, as the JSON API checks it (throttle first, then the key)."""
    try:
        throttle.check(request)
    except Throttled as exc:
        wait = int(exc.wait or 1)
        raise Refused(
            429, f"too many wrong API keys from this address; retry in {wait} seconds", wait
        ) from None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Refused(401, "send an API key: Authorization: Bearer <key>")
    key = ApiKey.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        throttle.record_bad_key(request)
        raise Refused(401, "the API key is not valid or was revoked")
    try:
        key.scope.check_writes()
    except Forbidden as exc:
        raise Refused(403, exc.message) from None
    _check_rate(key)
    return key


def _check_rate(key: ApiKey) -> None:
    """429 past ``FLEET_OTLP_EXPORTS_PER_MINUTE`` exports of this key this minute.

    Counted per worker process in the default cache (no query), in fixed
    one-minute windows; ``Retry-After`` is the rest of the window.
    """
    limit = settings.FLEET_OTLP_EXPORTS_PER_MINUTE
    if not limit:
        return
    now = time.time()
    window = int(now // 60)
    counter = f"fleet:otlp-exports:{key.pk}:{window}"
    if cache.add(counter, 1, timeout=120):
        return
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add and incr
        cache.add(counter, 1, timeout=120)
        return
    if count > limit:
        wait = max(1, math.ceil((window + 1) * 60 - now))
        raise Refused(
            429,
            f"this API key sent more than {limit} exports a minute; retry in {wait} seconds",
            wait,
        )


def _body(request: HttpRequest) -> bytes:
    """The body, decompressed; bounded by ``FLEET_API_MAX_BODY_BYTES`` before and after."""
    limit = settings.FLEET_API_MAX_BODY_BYTES
    too_large = f"the body is larger than the limit of {limit} bytes"
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise BadRequest(413, too_large)
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("gzip", "identity", ""):
        raise BadRequest(415, f"Content-Encoding {coding[:40]!r} is not supported; use gzip")
    try:
        body = request.body
    except RequestDataTooBig:
        raise BadRequest(413, too_large) from None
    if len(body) > limit:
        raise BadRequest(413, too_large)
    return decode.gunzip(body, limit) if coding == "gzip" else body


def _receive(
    request: HttpRequest,
    handle: Callable[[bytes, str, KeyScope], tuple[Message, otlp.IngestResult]],
) -> HttpResponse:
    encoding = _encoding(request)
    answer_in = encoding or "protobuf"
    try:
        key = _key(request)
        if encoding is None:
            raise BadRequest(415, "Content-Type must be application/x-protobuf or application/json")
        response, result = handle(_body(request), encoding, key.scope)
        _log(request, key, result)
        return _serialize(response, encoding)
    except Refused as exc:
        return _failure(exc.status, exc.message, answer_in, retry_after=exc.retry_after)
    except BadRequest as exc:
        return _failure(exc.status, exc.message, answer_in)
    except (OperationalError, InterfaceError) as exc:
        # Nothing of the failed session was written; sessions stored before it
        # are skipped by message id when the exporter retries.
        logger.warning("OTLP: database unavailable on %s: %s", request.path, exc)
        return _failure(503, "database unavailable; retry later", answer_in, retry_after=5)
    except Exception:
        logger.exception("OTLP error on %s", request.path)
        return _failure(500, "internal error; it has been logged", answer_in)


def _log(request: HttpRequest, key: ApiKey, result: otlp.IngestResult) -> None:
    """One line per export: what was stored and what was rejected (the reasons are in
    the exporter's answer; an operator sees here that a client sends what Fleet ignores)."""
    fields = {
        "path": request.path,
        "key": key.name,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "appended": result.appended,
        "sessions": len(result.sessions),
    }
    text = " ".join(f"{name}={value}" for name, value in fields.items() if name != "path")
    logger.info("OTLP %s %s", request.path, text, extra=fields)


def _traces(body: bytes, encoding: str, scope: KeyScope) -> tuple[Message, otlp.IngestResult]:
    request = decode.parse(body, encoding, ExportTraceServiceRequest())
    result = otlp.spans_ingest(spans=decode.spans(request), scope=scope)
    response = ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.rejected_spans = result.rejected
        response.partial_success.error_message = result.message
    return response, result


def _logs(body: bytes, encoding: str, scope: KeyScope) -> tuple[Message, otlp.IngestResult]:
    request = decode.parse(body, encoding, ExportLogsServiceRequest())
    result = otlp.logs_ingest(records=decode.log_records(request), scope=scope)
    response = ExportLogsServiceResponse()
    if result.rejected:
        response.partial_success.rejected_log_records = result.rejected
        response.partial_success.error_message = result.message
    return response, result


@csrf_exempt  # bearer keys, not cookies
@require_POST
def traces(request: HttpRequest, *args: Any) -> HttpResponse:
    return _receive(request, _traces)


@csrf_exempt  # bearer keys, not cookies
@require_POST
def logs(request: HttpRequest, *args: Any) -> HttpResponse:
    return _receive(request, _logs)
