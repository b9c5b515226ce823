"""OTLP/HTTP request bodies → OpenTelemetry's protobuf messages → ``sessions.otlp.SpanIn``.

Both encodings of the spec: binary protobuf and OTLP/JSON, whose differences
from protobuf's own JSON mapping are handled here: trace and span ids are hex
(protobuf's mapping reads bytes as base64), keys are lowerCamelCase, int64 are
strings or numbers, unknown fields are ignored. Decompression is bounded: the
decompressed size counts against ``FLEET_API_MAX_BODY_BYTES``, so a gzip bomb
stops at the limit instead of filling the memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from sessions.otlp import GENAI_EVENTS, EventIn, LogIn, SpanIn

M = TypeVar("M", bound=Message)
READ_SIZE = 64 * 1024
# Fields that hold ids in OTLP/JSON, hex there and bytes in protobuf.
ID_FIELDS = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)


class BadRequest(Exception):
    """A body that cannot be used: ``status`` is 400, 413 or 415."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` decompressed (every gzip member), refused past ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while data:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = decompressor.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise BadRequest(400, f"the body is not valid gzip: {exc}") from None
        size += len(part)
        if size > limit:
            raise BadRequest(
                413, f"the decompressed body is larger than the limit of {limit} bytes"
            )
        if not decompressor.eof:
            raise BadRequest(400, "the gzip body is truncated")
        parts.append(part)
        data = decompressor.unused_data
    return b"".join(parts)


def _ids_to_base64(document: Any) -> None:
    """Rewrite OTLP/JSON's hex ids, in place, as the base64 protobuf's JSON parser reads."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for name, value in node.items():
                if name in ID_FIELDS and isinstance(value, str):
                    try:
                        raw = bytes.fromhex(value)
                    except ValueError:
                        raise BadRequest(
                            400, f"{name} must be hex-encoded, got {value[:40]!r}"
                        ) from None
                    node[name] = base64.b64encode(raw).decode("ascii")
                else:
                    stack.append(value)


def parse(body: bytes, encoding: str, message: M) -> M:
    """``body`` (``protobuf`` or ``json``) decoded into ``message``; 400 when it cannot be."""
    if encoding == "protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise BadRequest(
                400, f"the body is not a valid protobuf message: {exc}"[:300]
            ) from None
        return message
    try:
        document = json.loads(body)
    except RecursionError:
        raise BadRequest(400, "the body is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadRequest(400, f"the body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(document, dict):
        raise BadRequest(400, "the body must be a JSON object")
    _ids_to_base64(document)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise BadRequest(400, f"the body is not a valid OTLP/JSON message: {exc}"[:300]) from None
    return message


def value(item: AnyValue) -> Any:
    """An attribute's value as a plain Python value (bytes as hex)."""
    kind = item.WhichOneof("value")
    if kind == "string_value":
        return item.string_value
    if kind == "bool_value":
        return item.bool_value
    if kind == "int_value":
        return item.int_value
    if kind == "double_value":
        return item.double_value
    if kind == "array_value":
        return [value(element) for element in item.array_value.values]
    if kind == "kvlist_value":
        return attributes(item.kvlist_value.values)
    if kind == "bytes_value":
        return item.bytes_value.hex()
    return None


def attributes(items: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(items)
    return {pair.key: value(pair.value) for pair in pairs}


def spans(request: Any) -> list[SpanIn]:
    """Every span of an ``ExportTraceServiceRequest``, with its resource's attributes."""
    found = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    SpanIn(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        error=span.status.code == Status.STATUS_CODE_ERROR,
                        status_message=span.status.message,
                        attributes=attributes(span.attributes),
                        resource=resource,
                        events=tuple(
                            EventIn(
                                name=event.name,
                                time_ns=event.time_unix_nano,
                                attributes=attributes(event.attributes),
                            )
                            for event in span.events
                            if event.name in GENAI_EVENTS
                        ),
                    )
                )
    return found


def log_records(request: Any) -> list[LogIn]:
    """Every record of an ``ExportLogsServiceRequest``, with its resource's attributes."""
    found = []
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                found.append(
                    LogIn(
                        time_ns=record.time_unix_nano,
                        observed_ns=record.observed_time_unix_nano,
                        body=value(record.body),
                        attributes=attributes(record.attributes),
                        resource=resource,
                        trace_id=record.trace_id.hex(),
                        span_id=record.span_id.hex(),
                        event_name=record.event_name,
                    )
                )
    return found
