"""The OTLP/HTTP receiver (``/otlp/v1/traces``, ``/otlp/v1/logs``; docs/OTLP.md).

Spans are made by the official OpenTelemetry SDK and encoded by its OTLP
encoder, or exported by its ``OTLPSpanExporter`` to a live server: the bytes
are a real client's, not hand-made.
"""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from sessions import services
from sessions.models import ApiKey, Message, Session
from sessions.otlp import EventIn, LogIn, SpanIn, logs_ingest, spans_ingest

TRACES = "/otlp/v1/traces"
LOGS = "/otlp/v1/logs"
PROTOBUF = "application/x-protobuf"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
SECOND = 1_000_000_000


@pytest.fixture
def token(db: Any) -> str:
    return ApiKey.generate(name="otel")[1]


class Recorder:
    """Spans made with the official SDK, kept in memory until exported."""

    def __init__(self, service: str = "support-bot") -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("tests.otlp")

    def span(
        self,
        name: str,
        attributes: dict[str, Any],
        start: int,
        end: int,
        *,
        error: bool = False,
    ) -> None:
        span = self.tracer.start_span(name, attributes=attributes, start_time=start)
        if error:
            span.set_status(SpanStatus(StatusCode.ERROR, "provider said no"))
        span.end(end_time=end)

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.memory.get_finished_spans()

    def protobuf(self) -> bytes:
        return encode_spans(self.spans).SerializeToString()

    def json(self) -> bytes:
        """OTLP/JSON as the spec writes it: camelCase, hex ids, int64 as strings."""
        document = json_format.MessageToDict(encode_spans(self.spans))
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    for name in ("traceId", "spanId", "parentSpanId"):
                        if name in span:
                            span[name] = _b64_to_hex(span[name])
        return json.dumps(document).encode()


def _b64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def chat(
    recorder: Recorder,
    conversation: str,
    *,
    at: int = T0,
    prompt: str | None = None,
    answer: str | None = None,
    error: bool = False,
    **extra: Any,
) -> None:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": f"chatcmpl-{at}",
        "gen_ai.conversation.id": conversation,
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        **extra,
    }
    if prompt is not None:
        attributes["gen_ai.input.messages"] = json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        )
    if answer is not None:
        attributes["gen_ai.output.messages"] = json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": answer}],
                    "finish_reason": "stop",
                }
            ]
        )
    recorder.span("chat gpt-4o", attributes, at, at + 2 * SECOND, error=error)


def post(
    client: Client,
    body: bytes,
    token: str | None,
    *,
    path: str = TRACES,
    content_type: str = PROTOBUF,
    **headers: str,
) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(path, body, content_type=content_type, headers=headers)


def answer(response: Any) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == PROTOBUF
    return ExportTraceServiceResponse.FromString(response.content)


def failure(response: Any, status: int) -> Status:
    assert response.status_code == status, response.content
    if response["Content-Type"] == "application/json":
        return json_format.Parse(response.content, Status())
    assert response["Content-Type"] == PROTOBUF
    return Status.FromString(response.content)


# --- mapping, through the encoder of the official SDK -------------------------


@pytest.mark.django_db
def test_a_chat_span_becomes_the_turn_with_its_usage_model_and_response_id(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-1", prompt="Where is my order?", answer="It ships today.")

    result = answer(post(client, recorder.protobuf(), token))

    assert not result.HasField("partial_success")
    session = Session.objects.get(key="conv-1")
    assert session.agent == "support-bot"
    user, assistant = Message.objects.filter(session=session).order_by("seq")
    assert (user.seq, user.role, user.content) == (1, "user", "Where is my order?")
    assert (assistant.seq, assistant.role, assistant.content) == (2, "assistant", "It ships today.")
    assert assistant.model == "gpt-4o-2024-08-06"
    assert assistant.provider_response_id == f"chatcmpl-{T0}"
    assert assistant.created_at.timestamp() == (T0 + 2 * SECOND) / SECOND
    assert user.created_at.timestamp() == T0 / SECOND
    # OTel's input tokens include the cache reads: stored as they are.
    assert (assistant.prompt_tokens, assistant.completion_tokens) == (1200, 80)
    assert assistant.cache_read_tokens == 1000
    assert (session.prompt_tokens, session.completion_tokens, session.cache_read_tokens) == (
        1200,
        80,
        1000,
    )
    assert (session.turns, session.api_calls, session.message_count) == (1, 1, 2)


@pytest.mark.django_db
def test_the_cost_is_the_one_the_json_api_computes_for_the_same_turn(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-cost", answer="ok")
    answer(post(client, recorder.protobuf(), token))
    services.messages_append(
        key="via-api",
        messages=[
            {
                "role": "assistant",
                "content": "ok",
                "model": "gpt-4o-2024-08-06",
                "created_at": "2026-01-01T00:00:02Z",
                "usage": {
                    "prompt_tokens": 1200,
                    "completion_tokens": 80,
                    "cache_read_tokens": 1000,
                },
            }
        ],
    )
    otlp = Session.objects.get(key="conv-cost")
    api = Session.objects.get(key="via-api")
    assert otlp.cost_usd == api.cost_usd
    assert otlp.cost_usd > Decimal(0)
    assert Message.objects.get(session=otlp).cost_source == "computed"


@pytest.mark.django_db
def test_without_captured_content_the_turn_shows_with_its_usage_only(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-quiet")

    answer(post(client, recorder.protobuf(), token))

    (message,) = Message.objects.filter(session__key="conv-quiet")
    assert (message.role, message.content, message.prompt_tokens) == ("assistant", None, 1200)
    assert Session.objects.get(key="conv-quiet").api_calls == 1


@pytest.mark.django_db
def test_a_retried_export_adds_nothing(client: Client, token: str) -> None:
    recorder = Recorder()
    chat(recorder, "conv-retry", prompt="hi", answer="hello")
    body = recorder.protobuf()
    answer(post(client, body, token))
    before = Session.objects.values().get(key="conv-retry")

    answer(post(client, body, token))

    assert Message.objects.filter(session__key="conv-retry").count() == 2
    after = Session.objects.values().get(key="conv-retry")
    assert {k: after[k] for k in ("message_count", "prompt_tokens", "cost_usd", "turns")} == {
        k: before[k] for k in ("message_count", "prompt_tokens", "cost_usd", "turns")
    }


@pytest.mark.django_db
def test_spans_of_an_export_land_in_their_own_time_order(client: Client, token: str) -> None:
    recorder = Recorder()
    # Ended (and so exported) in the reverse order of their start.
    chat(recorder, "conv-order", at=T0 + 10 * SECOND, answer="second")
    chat(recorder, "conv-order", at=T0, answer="first")

    answer(post(client, recorder.protobuf(), token))

    contents = list(
        Message.objects.filter(session__key="conv-order")
        .order_by("seq")
        .values_list("content", flat=True)
    )
    assert contents == ["first", "second"]


@pytest.mark.django_db
def test_each_export_logs_one_line_with_what_was_stored_and_rejected(
    client: Client, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-log", prompt="hi", answer="hello")
    recorder.span("GET /", {"http.request.method": "GET"}, T0, T0 + SECOND)

    with caplog.at_level("INFO", logger="fleet.otlp.views"):
        answer(post(client, recorder.protobuf(), token))

    (line,) = [r for r in caplog.records if r.name == "fleet.otlp.views"]
    assert line.getMessage() == (
        "OTLP /otlp/v1/traces key=otel accepted=1 rejected=1 appended=2 sessions=1"
    )


@pytest.mark.django_db
def test_the_session_key_falls_back_to_session_id_then_the_trace_id(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    recorder.span(
        "llm",
        {"openinference.span.kind": "LLM", "session.id": "oi-session", "llm.model_name": "m"},
        T0,
        T0 + SECOND,
    )
    recorder.span("chat", {"gen_ai.operation.name": "chat"}, T0, T0 + SECOND)
    trace_id = format(recorder.spans[1].context.trace_id, "032x")

    answer(post(client, recorder.protobuf(), token))

    assert set(Session.objects.values_list("key", flat=True)) == {"oi-session", trace_id}


@pytest.mark.django_db
def test_openinference_token_counts_and_messages_are_read(client: Client, token: str) -> None:
    recorder = Recorder()
    recorder.span(
        "ChatCompletion",
        {
            "openinference.span.kind": "LLM",
            "session.id": "oi",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 50,
            "llm.token_count.completion": 7,
            "llm.token_count.prompt_details.cache_read": 20,
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "be brief",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "2+2?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "4",
        },
        T0,
        T0 + SECOND,
    )

    answer(post(client, recorder.protobuf(), token))

    rows = list(
        Message.objects.filter(session__key="oi")
        .order_by("seq")
        .values_list("role", "content", "prompt_tokens", "completion_tokens", "cache_read_tokens")
    )
    assert rows == [("user", "2+2?", 0, 0, 0), ("assistant", "4", 50, 7, 20)]


@pytest.mark.django_db
def test_openllmetry_spans_are_read(client: Client, token: str) -> None:
    recorder = Recorder()
    recorder.span(
        "openai.chat",
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.prompt_tokens": 40,
            "gen_ai.usage.completion_tokens": 9,
            "session.id": "traceloop",
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "be brief",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": "weather in Oslo?",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.tool_calls.0.id": "call_7",
            "gen_ai.completion.0.tool_calls.0.name": "get_weather",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Oslo"}',
        },
        T0,
        T0 + SECOND,
    )

    answer(post(client, recorder.protobuf(), token))

    rows = list(
        Message.objects.filter(session__key="traceloop")
        .order_by("seq")
        .values_list("role", "content", "tool_calls", "prompt_tokens", "completion_tokens")
    )
    assert rows == [
        ("user", "weather in Oslo?", [], 0, 0),
        (
            "assistant",
            None,
            [{"id": "call_7", "name": "get_weather", "arguments": '{"city": "Oslo"}'}],
            40,
            9,
        ),
    ]


@pytest.mark.django_db
def test_input_tokens_counted_without_the_cache_are_normalised(client: Client, token: str) -> None:
    recorder = Recorder()
    chat(recorder, "conv-anthropic", **{"gen_ai.usage.input_tokens": 10})

    answer(post(client, recorder.protobuf(), token))

    message = Message.objects.get(session__key="conv-anthropic")
    assert (message.prompt_tokens, message.cache_read_tokens) == (1010, 1000)


@pytest.mark.django_db
def test_a_tool_span_becomes_the_call_and_its_result_paired_by_call_id(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-tool")
    recorder.span(
        "execute_tool get_weather",
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": "conv-tool",
            "gen_ai.tool.name": "get_weather",
            "gen_ai.tool.call.id": "call_1",
            "gen_ai.tool.call.arguments": '{"city": "Oslo"}',
            "gen_ai.tool.call.result": "-3 °C",
        },
        T0 + 3 * SECOND,
        T0 + 4 * SECOND,
    )

    answer(post(client, recorder.protobuf(), token))

    rows = list(
        Message.objects.filter(session__key="conv-tool")
        .order_by("seq")
        .values_list("role", "tool_calls", "tool_call_id", "content")
    )
    assert rows[1:] == [
        (
            "assistant",
            [{"id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}],
            "",
            None,
        ),
        ("tool", [], "call_1", "-3 °C"),
    ]
    assert Session.objects.get(key="conv-tool").tool_call_count == 1


@pytest.mark.django_db
def test_a_spans_start_and_end_are_the_duration_of_the_call_and_the_tool_run(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-timed", prompt="q", answer="a")
    recorder.span(
        "execute_tool grep",
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": "conv-timed",
            "gen_ai.tool.name": "grep",
            "gen_ai.tool.call.id": "call_1",
        },
        T0 + 3 * SECOND,
        T0 + 3 * SECOND + 250_000_000,
    )

    answer(post(client, recorder.protobuf(), token))

    rows = list(
        Message.objects.filter(session__key="conv-timed")
        .order_by("seq")
        .values_list("role", "duration_ms")
    )
    # The user prompt and the call the tool span stands for have no duration of their own.
    assert rows == [("user", None), ("assistant", 2000), ("assistant", None), ("tool", 250)]


@pytest.mark.parametrize(
    ("value", "stored"),
    [(0.45, 450), ("1.2", 1200), (0, 0), (-1, None), ("soon", None), (10**9, None), (True, None)],
)
@pytest.mark.django_db
def test_a_model_spans_time_to_first_chunk_is_its_time_to_first_token(
    client: Client, token: str, value: Any, stored: int | None
) -> None:
    recorder = Recorder()
    # The GenAI conventions' streaming attribute, in seconds; one Fleet cannot
    # store is left out, the call kept.
    chat(recorder, "conv-ttft", answer="a", **{"gen_ai.response.time_to_first_chunk": value})

    answer(post(client, recorder.protobuf(), token))

    call = Message.objects.get(session__key="conv-ttft", role="assistant")
    assert (call.duration_ms, call.time_to_first_token_ms) == (2000, stored)


@pytest.mark.django_db
def test_a_call_the_model_span_carries_is_not_repeated_by_its_tool_span(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    output = [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_9", "name": "search", "arguments": {}}],
        }
    ]
    chat(recorder, "conv-call", **{"gen_ai.output.messages": json.dumps(output)})
    recorder.span(
        "execute_tool search",
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": "conv-call",
            "gen_ai.tool.name": "search",
            "gen_ai.tool.call.id": "call_9",
        },
        T0 + 3 * SECOND,
        T0 + 4 * SECOND,
    )

    answer(post(client, recorder.protobuf(), token))

    session = Session.objects.get(key="conv-call")
    assert session.tool_call_count == 1
    roles = list(Message.objects.filter(session=session).order_by("seq").values_list("role"))
    assert roles == [("assistant",), ("tool",)]


@pytest.mark.django_db
def test_messages_of_an_agent_span_s_children_name_that_sub_agent(
    client: Client, token: str
) -> None:
    recorder = Recorder(service="orchestrator")
    tracer = recorder.tracer
    with tracer.start_as_current_span(
        "invoke_agent researcher",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "researcher",
            "gen_ai.conversation.id": "conv-sub",
        },
        start_time=T0,
        end_on_exit=False,
    ) as agent_span:
        chat(recorder, "conv-sub", at=T0 + SECOND, answer="found it")
    agent_span.end(end_time=T0 + 5 * SECOND)
    chat(recorder, "conv-sub", at=T0 + 10 * SECOND, answer="summary")  # the main agent's

    answer(post(client, recorder.protobuf(), token))

    session = Session.objects.get(key="conv-sub")
    assert session.agent == "orchestrator"  # agent spans write nothing themselves
    rows = list(
        Message.objects.filter(session=session).order_by("seq").values_list("content", "agent_name")
    )
    assert rows == [("found it", "researcher"), ("summary", "")]


@pytest.mark.django_db
def test_a_sub_agent_under_the_main_agent_is_named_on_its_messages(
    client: Client, token: str
) -> None:
    recorder = Recorder(service="orchestrator")
    chat(recorder, "conv-sub2", at=T0, answer="plan")  # the main agent, no agent span
    with recorder.tracer.start_as_current_span(
        "invoke_agent coder",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "coder"},
        start_time=T0 + SECOND,
        end_on_exit=False,
    ) as agent_span:
        chat(recorder, "conv-sub2", at=T0 + 2 * SECOND, answer="code")
    agent_span.end(end_time=T0 + 5 * SECOND)

    result = answer(post(client, recorder.protobuf(), token))

    assert result.partial_success.rejected_spans == 0
    assert Session.objects.count() == 1  # the agent span made no session of its own
    rows = list(
        Message.objects.filter(session__key="conv-sub2")
        .order_by("seq")
        .values_list("content", "agent_name")
    )
    assert rows == [("plan", ""), ("code", "coder")]
    assert Session.objects.get(key="conv-sub2").agent == "orchestrator"


def _export_finished(client: Client, token: str, recorder: Recorder) -> None:
    """Post the spans ended so far, as a batch processor would, and forget them."""
    answer(post(client, recorder.protobuf(), token))
    recorder.memory.clear()


def _agent_span(recorder: Recorder, name: str, at: int, **attributes: Any) -> Any:
    return recorder.tracer.start_as_current_span(
        f"invoke_agent {name}",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            **attributes,
        },
        start_time=at,
        end_on_exit=False,
    )


def _speakers(key: str) -> list[tuple[str, str | None, str]]:
    return list(
        Message.objects.filter(session__key=key)
        .order_by("seq")
        .values_list("role", "content", "agent_name")
    )


@pytest.mark.django_db
def test_an_agent_span_in_a_later_export_names_the_sub_agent_on_its_earlier_children(
    client: Client, token: str
) -> None:
    recorder = Recorder(service="orchestrator")
    chat(recorder, "conv-late", at=T0, answer="plan")  # the main agent's
    with _agent_span(recorder, "researcher", T0 + SECOND) as agent:
        chat(recorder, "conv-late", at=T0 + 2 * SECOND, answer="found it")
        recorder.span(
            "execute_tool search",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search",
                "gen_ai.tool.call.id": "call_s",
                "gen_ai.conversation.id": "conv-late",
            },
            T0 + 5 * SECOND,
            T0 + 6 * SECOND,
        )
        _export_finished(client, token, recorder)  # the children; the agent still runs
    agent.end(end_time=T0 + 9 * SECOND)
    agent_export = recorder.protobuf()

    assert [row[2] for row in _speakers("conv-late")] == ["", "", "", ""]
    answer(post(client, agent_export, token))

    assert _speakers("conv-late") == [
        ("assistant", "plan", ""),
        ("assistant", "found it", "researcher"),
        ("assistant", None, "researcher"),  # the tool call
        ("tool", None, "researcher"),
    ]
    answer(post(client, agent_export, token))  # the exporter's retry: the same
    assert _speakers("conv-late")[1][2] == "researcher"


@pytest.mark.django_db
def test_a_late_agent_span_reaches_its_children_through_a_step_span_of_its_export(
    client: Client, token: str
) -> None:
    recorder = Recorder(service="orchestrator")
    with (
        _agent_span(recorder, "coder", T0, **{"gen_ai.conversation.id": "conv-step"}) as agent,
        recorder.tracer.start_as_current_span("step 1", start_time=T0 + SECOND),
    ):
        chat(recorder, "conv-step", at=T0 + 2 * SECOND, answer="code")
        _export_finished(client, token, recorder)
    agent.end(end_time=T0 + 9 * SECOND)
    _export_finished(client, token, recorder)  # the step span (not GenAI) and the agent

    assert _speakers("conv-step") == [("assistant", "code", "coder")]


@pytest.mark.django_db
def test_a_late_outer_agent_does_not_rename_a_nested_sub_agents_messages(
    client: Client, token: str
) -> None:
    recorder = Recorder(service="orchestrator")
    with _agent_span(recorder, "lead", T0) as outer:
        with _agent_span(recorder, "helper", T0 + SECOND) as inner:
            chat(recorder, "conv-nest", at=T0 + 2 * SECOND, answer="helped")
            _export_finished(client, token, recorder)
        inner.end(end_time=T0 + 5 * SECOND)
        _export_finished(client, token, recorder)
        chat(recorder, "conv-nest", at=T0 + 6 * SECOND, answer="led")
        _export_finished(client, token, recorder)
    outer.end(end_time=T0 + 9 * SECOND)
    _export_finished(client, token, recorder)

    assert _speakers("conv-nest") == [
        ("assistant", "helped", "helper"),
        ("assistant", "led", "lead"),
    ]


@pytest.mark.django_db
def test_a_late_agent_span_of_the_sessions_own_agent_names_no_sub_agent(
    client: Client, token: str
) -> None:
    recorder = Recorder(service="orchestrator")
    with _agent_span(recorder, "orchestrator", T0) as agent:
        chat(recorder, "conv-main", at=T0 + SECOND, answer="mine")
        _export_finished(client, token, recorder)
    agent.end(end_time=T0 + 9 * SECOND)
    _export_finished(client, token, recorder)

    assert _speakers("conv-main") == [("assistant", "mine", "")]


@pytest.mark.django_db
def test_a_wait_ends_when_its_ancestor_arrives_and_none_outlives_a_day(
    client: Client, token: str
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from sessions.models import SubAgentWait

    recorder = Recorder(service="web-app")
    with recorder.tracer.start_as_current_span("POST /ask", start_time=T0):
        chat(recorder, "conv-root", at=T0 + SECOND, answer="hi")
        _export_finished(client, token, recorder)
    assert SubAgentWait.objects.count() == 1  # the chat span waits for its request span
    _export_finished(client, token, recorder)  # the request span: a root, no agent

    assert not SubAgentWait.objects.exists()
    assert _speakers("conv-root") == [("assistant", "hi", "")]

    # A parent that never comes (another service's span): dropped after a day.
    with recorder.tracer.start_as_current_span("remote parent", start_time=T0):
        chat(recorder, "conv-root", at=T0 + 2 * SECOND, answer="again")
        _export_finished(client, token, recorder)
    SubAgentWait.objects.update(created_at=timezone.now() - timedelta(days=1, seconds=1))
    recorder.memory.clear()
    with recorder.tracer.start_as_current_span("another", start_time=T0):
        chat(recorder, "conv-root", at=T0 + 3 * SECOND, answer="third")
        _export_finished(client, token, recorder)

    assert SubAgentWait.objects.count() == 1  # only the newest


@pytest.mark.django_db
def test_an_error_status_marks_the_message_and_the_sessions_turn_error(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-error", error=True)

    answer(post(client, recorder.protobuf(), token))

    assert Message.objects.get(session__key="conv-error").status == "error"
    session = Session.objects.get(key="conv-error")
    assert (session.state, session.turn_id) == (
        "error",
        format(recorder.spans[0].context.trace_id, "032x"),
    )
    assert session.turn_started_at.timestamp() == T0 / SECOND

    later = Recorder()
    chat(later, "conv-error", at=T0 + 60 * SECOND, answer="recovered")
    answer(post(client, later.protobuf(), token))

    session.refresh_from_db()
    assert (session.state, session.turn_id, session.turn_started_at) == ("idle", "", None)


@pytest.mark.django_db
def test_an_older_success_does_not_hide_the_newest_error(client: Client, token: str) -> None:
    recorder = Recorder()
    chat(recorder, "conv-newest", at=T0 + 10 * SECOND, error=True)
    chat(recorder, "conv-newest", at=T0)

    answer(post(client, recorder.protobuf(), token))

    assert Session.objects.get(key="conv-newest").state == "error"


@pytest.mark.django_db
def test_spans_without_genai_attributes_are_counted_rejected_and_write_nothing(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    recorder.span("GET /orders", {"http.request.method": "GET"}, T0, T0 + SECOND)
    recorder.span("SELECT orders", {"db.system.name": "postgresql"}, T0, T0 + SECOND)
    recorder.span("embed", {"gen_ai.operation.name": "embeddings"}, T0, T0 + SECOND)

    result = answer(post(client, recorder.protobuf(), token))

    assert result.partial_success.rejected_spans == 3
    assert "2 spans ignored: no GenAI attribute" in result.partial_success.error_message
    assert "1 span not mapped: GenAI operation 'embeddings'" in result.partial_success.error_message
    assert not Session.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_mixed_spans_store_the_genai_ones_and_count_the_rest(client: Client, token: str) -> None:
    recorder = Recorder()
    recorder.span("GET /", {"http.request.method": "GET"}, T0, T0 + SECOND)
    chat(recorder, "conv-mixed", answer="hi")

    result = answer(post(client, recorder.protobuf(), token))

    assert result.partial_success.rejected_spans == 1
    assert Message.objects.filter(session__key="conv-mixed").count() == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("sqlite_only")
def test_an_export_of_more_sessions_than_sqlite_takes_variables_lands(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from django.db import connection

    from sessions.otlp import store
    from sessions.services import subagents

    recorder = Recorder()
    for index in range(150):
        chat(recorder, f"many-{index}", at=T0 + index * SECOND)
    body = recorder.protobuf()
    connection.ensure_connection()
    # The stored sessions are read by key before writing: in chunks, so an
    # export's number of sessions never meets SQLite's bound on variables.
    raw = connection.connection
    bound = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
    monkeypatch.setattr(store, "READ_CHUNK", 50)
    monkeypatch.setattr(subagents, "READ_CHUNK", 50)  # the traces whose waits are read
    try:
        answer(post(client, body, token))
    finally:
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, bound)

    assert Session.objects.filter(key__startswith="many-").count() == 150


@pytest.mark.django_db
def test_a_deleted_session_rejects_its_spans_and_the_others_are_stored(
    client: Client, token: str
) -> None:
    services.messages_append(key="gone", messages=[{"role": "user", "content": "x"}])
    services.session_delete(key="gone")
    recorder = Recorder()
    chat(recorder, "gone", answer="late")
    chat(recorder, "alive", answer="fine")

    result = answer(post(client, recorder.protobuf(), token))

    assert result.partial_success.rejected_spans == 1
    assert "'gone'" in result.partial_success.error_message
    assert "deleted" in result.partial_success.error_message
    assert list(Session.objects.values_list("key", flat=True)) == ["alive"]


@pytest.mark.django_db
def test_a_key_scoped_to_other_agents_stores_nothing_of_this_one(client: Client) -> None:
    scoped = ApiKey.generate(name="scoped", agents=["other-bot"])[1]
    recorder = Recorder(service="support-bot")
    chat(recorder, "conv-scope", answer="x")

    result = answer(post(client, recorder.protobuf(), scoped))

    assert result.partial_success.rejected_spans == 1
    assert "may write only sessions of" in result.partial_success.error_message
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_an_invalid_value_rejects_that_span_alone(client: Client, token: str) -> None:
    recorder = Recorder()
    chat(recorder, "conv-bad", **{"gen_ai.usage.output_tokens": -5})
    chat(recorder, "conv-good", answer="ok")

    result = answer(post(client, recorder.protobuf(), token))

    assert result.partial_success.rejected_spans == 1
    assert "completion_tokens" in result.partial_success.error_message
    assert list(Session.objects.values_list("key", flat=True)) == ["conv-good"]


# --- OTLP/JSON ---------------------------------------------------------------


@pytest.mark.django_db
def test_otlp_json_with_hex_ids_lands_like_protobuf_and_answers_json(
    client: Client, token: str
) -> None:
    recorder = Recorder()
    chat(recorder, "conv-json", prompt="hi", answer="hello")
    recorder.span("GET /", {"http.request.method": "GET"}, T0, T0 + SECOND)

    response = post(client, recorder.json(), token, content_type="application/json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": (
                "1 span ignored: no GenAI attribute (gen_ai.*, llm.*, openinference.span.kind)"
            ),
        }
    }
    span = recorder.spans[0]
    expected_id = (
        f"otel:{span.context.trace_id:032x}:{span.context.span_id:016x}"  # hex, not base64
    )
    assert Message.objects.filter(session__key="conv-json", message_id=expected_id).exists()
    assert Message.objects.filter(session__key="conv-json").count() == 2


@pytest.mark.django_db
def test_otlp_json_ids_that_are_not_hex_are_a_400(client: Client, token: str) -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}

    response = post(client, json.dumps(body).encode(), token, content_type="application/json")

    assert "traceId must be hex" in failure(response, 400).message


@pytest.mark.django_db
def test_an_empty_export_is_a_full_success(client: Client, token: str) -> None:
    response = post(client, b"{}", token, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {}


# --- bad input ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not a protobuf", PROTOBUF),
        (b"\xff\xff\xff\xff\xff", PROTOBUF),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"resourceSpans": 7}', "application/json"),
        (b"\xff\xfe\x00", "application/json"),
    ],
)
def test_undecodable_bodies_are_a_400_and_write_nothing(
    client: Client, token: str, body: bytes, content_type: str
) -> None:
    response = post(client, body, token, content_type=content_type)

    assert failure(response, 400).message
    assert response["Content-Type"] == content_type
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_a_truncated_protobuf_is_a_400_and_writes_nothing(client: Client, token: str) -> None:
    recorder = Recorder()
    chat(recorder, "conv-cut", prompt="hi", answer="hello")
    body = recorder.protobuf()

    response = post(client, body[: len(body) - 7], token)

    assert "not a valid protobuf" in failure(response, 400).message
    assert not Session.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_another_content_type_is_a_415(client: Client, token: str, content_type: str) -> None:
    response = post(client, b"{}", token, content_type=content_type)
    assert "application/x-protobuf" in failure(response, 415).message


@pytest.mark.django_db
def test_an_unknown_content_encoding_is_a_415(client: Client, token: str) -> None:
    response = post(client, b"x", token, **{"Content-Encoding": "br"})
    assert "Content-Encoding" in failure(response, 415).message


@pytest.mark.django_db
def test_a_gzipped_export_is_read(client: Client, token: str) -> None:
    recorder = Recorder()
    chat(recorder, "conv-gzip", answer="zipped")

    answer(post(client, gzip.compress(recorder.protobuf()), token, **{"Content-Encoding": "gzip"}))

    assert Message.objects.get(session__key="conv-gzip").content == "zipped"


@pytest.mark.django_db
def test_a_gzip_bomb_stops_at_the_body_limit_with_a_413(
    client: Client, token: str, settings: Any
) -> None:
    settings.FLEET_API_MAX_BODY_BYTES = 256 * 1024
    bomb = gzip.compress(b"\x00" * (200 * 1024 * 1024), compresslevel=9)  # 200 MiB, ~200 KiB
    assert len(bomb) < settings.FLEET_API_MAX_BODY_BYTES

    tracemalloc.start()
    try:
        response = post(client, bomb, token, **{"Content-Encoding": "gzip"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert "decompressed body is larger than the limit of 262144" in failure(response, 413).message
    # Decompression stopped at the limit: nowhere near the 200 MiB it would make.
    assert peak < 8 * 1024 * 1024


@pytest.mark.django_db
def test_corrupt_or_truncated_gzip_is_a_400(client: Client, token: str) -> None:
    whole = gzip.compress(b"\x0a\x00" * 100)
    for body in (b"\x1f\x8b\x08garbage", whole[:-12]):
        response = post(client, body, token, **{"Content-Encoding": "gzip"})
        assert "gzip" in failure(response, 400).message


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_413_before_it_is_read(
    client: Client, token: str, settings: Any
) -> None:
    settings.FLEET_API_MAX_BODY_BYTES = 1024
    response = post(client, b"\x0a" * 2048, token)
    assert failure(response, 413).message


# --- keys ---------------------------------------------------------------------


@pytest.mark.django_db
def test_no_key_or_a_bad_key_is_a_401(client: Client, token: str) -> None:
    for key in (None, "fleet_wrong"):
        response = post(client, b"", key)
        assert failure(response, 401).message
        assert response["WWW-Authenticate"] == 'Bearer realm="fleet"'


@pytest.mark.django_db
def test_a_read_only_key_is_a_403_and_writes_nothing(client: Client) -> None:
    read_only = ApiKey.generate(name="ro", read_only=True)[1]
    recorder = Recorder()
    chat(recorder, "conv-ro", answer="x")

    response = post(client, recorder.protobuf(), read_only)

    assert "read-only" in failure(response, 403).message
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_bad_keys_are_throttled_like_the_json_api(
    client: Client, token: str, settings: Any
) -> None:
    settings.FLEET_API_BAD_KEY_LIMIT = 3
    for _ in range(3):
        failure(post(client, b"", "fleet_wrong"), 401)

    response = post(client, b"", token)  # the right key, from the blocked address

    failure(response, 429)
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_a_database_failure_is_a_retryable_503_and_a_retry_adds_nothing_twice(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from sessions.otlp import store

    recorder = Recorder()
    chat(recorder, "a-first", answer="one")
    chat(recorder, "b-second", answer="two")
    body = recorder.protobuf()
    real = store.services.messages_append_all

    def fail_on_second(**kwargs: Any) -> Any:
        if kwargs["key"] == "b-second":
            raise OperationalError("database is locked")
        return real(**kwargs)

    monkeypatch.setattr(store.services, "messages_append_all", fail_on_second)

    response = post(client, body, token)

    assert "retry later" in failure(response, 503).message
    assert response["Retry-After"] == "5"
    assert not Session.objects.filter(key="b-second").exists()
    monkeypatch.setattr(store.services, "messages_append_all", real)

    answer(post(client, body, token))  # the exporter's retry

    assert Message.objects.filter(session__key="a-first").count() == 1
    assert Message.objects.filter(session__key="b-second").count() == 1


@pytest.mark.django_db
def test_a_key_over_its_export_rate_is_a_429_with_retry_after_and_writes_nothing(
    client: Client, token: str, settings: Any
) -> None:
    settings.FLEET_OTLP_EXPORTS_PER_MINUTE = 2
    other = ApiKey.generate(name="other")[1]
    bodies = []
    for index in range(3):
        recorder = Recorder()
        chat(recorder, f"conv-rate-{index}", answer="x")
        bodies.append(recorder.protobuf())
    for body in bodies[:2]:
        answer(post(client, body, token))

    response = post(client, bodies[2], token)

    # The client should slow down: 429, retryable, with the seconds to wait,
    # the Status in the request's encoding.
    assert "exports a minute" in failure(response, 429).message
    assert 1 <= int(response["Retry-After"]) <= 60
    assert not Session.objects.filter(key="conv-rate-2").exists()
    answer(post(client, bodies[2], other))  # another key has its own budget
    assert Session.objects.filter(key="conv-rate-2").exists()


@pytest.mark.django_db
def test_a_busy_database_is_a_503_with_retry_after_in_the_requests_encoding(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from sessions.otlp import store

    def busy(**kwargs: Any) -> Any:
        raise OperationalError("database is locked")

    monkeypatch.setattr(store.services, "messages_append_all", busy)
    recorder = Recorder()
    chat(recorder, "conv-busy", answer="x")

    response = post(client, recorder.json(), token, content_type="application/json")

    # The server is unavailable, not the client too fast: 503, retryable.
    assert "retry later" in failure(response, 503).message
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
def test_get_is_not_allowed(client: Client, token: str) -> None:
    assert client.get(TRACES).status_code == 405


# --- logs: Claude Code's events ---------------------------------------------------


def claude_code_export(*events: tuple[str, dict[str, Any]], session: str = "cc-1") -> bytes:
    """Records shaped as Claude Code sends them: the body is the event's name, the
    attributes its fields with numbers as strings, ``event.sequence`` its order."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for name, value in (("service.name", "claude-code"), ("service.version", "2.1.0")):
        attribute = resource_logs.resource.attributes.add()
        attribute.key, attribute.value.string_value = name, value
    records = resource_logs.scope_logs.add().log_records
    for sequence, (event, fields) in enumerate(events, start=1):
        record = records.add()
        record.time_unix_nano = T0 + sequence * SECOND
        record.observed_time_unix_nano = T0 + sequence * SECOND
        record.body.string_value = f"claude_code.{event}"
        values = {
            "event.name": event,
            "event.timestamp": "2026-01-01T00:00:00.000Z",
            "event.sequence": sequence,
            "session.id": session,
            "prompt.id": "7f0c0d1e-prompt",
            "terminal.type": "vscode",
            **fields,
        }
        for name, value in values.items():
            attribute = record.attributes.add()
            attribute.key = name
            if isinstance(value, int):
                attribute.value.int_value = value
            else:
                attribute.value.string_value = value
    return request.SerializeToString()


TURN = (
    ("user_prompt", {"prompt_length": "42"}),
    (
        "api_request",
        {
            "model": "claude-sonnet-4-5-20250929",
            "cost_usd": "0.0123",
            "duration_ms": "2345",
            "input_tokens": "12",
            "output_tokens": "340",
            "cache_read_tokens": "20000",
            "cache_creation_tokens": "1500",
        },
    ),
    (
        "tool_result",
        {
            "tool_name": "Bash",
            "success": "true",
            "duration_ms": "120",
            "tool_parameters": '{"bash_command": "ls"}',
        },
    ),
    ("tool_decision", {"tool_name": "Bash", "decision": "accept", "source": "config"}),
)


def logs_answer(response: Any) -> ExportLogsServiceResponse:
    assert response.status_code == 200, response.content
    return ExportLogsServiceResponse.FromString(response.content)


@pytest.mark.django_db
def test_a_claude_code_turn_lands_with_reported_cost_and_anthropic_tokens_normalised(
    client: Client, token: str
) -> None:
    result = logs_answer(post(client, claude_code_export(*TURN), token, path=LOGS))

    # tool_decision is not mapped: said so, nothing pretended.
    assert result.partial_success.rejected_log_records == 1
    assert "Claude Code event 'tool_decision'" in result.partial_success.error_message
    session = Session.objects.get(key="cc-1")
    assert (session.agent, session.model) == ("claude-code", "claude-sonnet-4-5-20250929")
    rows = list(
        Message.objects.filter(session=session)
        .order_by("seq")
        .values_list("role", "content", "prompt_tokens", "completion_tokens", "cost_source")
    )
    assert rows == [
        ("user", None, 0, 0, ""),
        # Claude Code's input excludes the cache (Anthropic's count): 12 + 20000 + 1500.
        ("assistant", None, 21_512, 340, "reported"),
        ("assistant", None, 0, 0, ""),
        ("tool", None, 0, 0, ""),
    ]
    assert session.cost_usd == Decimal("0.0123")
    assert (session.cache_read_tokens, session.cache_creation_tokens) == (20_000, 1_500)
    assert (session.api_calls, session.tool_call_count) == (1, 1)
    call = Message.objects.get(session=session, seq=3).tool_calls[0]
    assert (call["name"], call["arguments"]) == ("Bash", '{"bash_command": "ls"}')


@pytest.mark.django_db
def test_claude_code_durations_land_on_the_call_and_the_tool_run_and_in_the_rollup(
    client: Client, token: str
) -> None:
    from sessions.models import LatencyUsage

    logs_answer(post(client, claude_code_export(*TURN), token, path=LOGS))

    rows = list(
        Message.objects.filter(session__key="cc-1")
        .order_by("seq")
        .values_list("role", "name", "duration_ms")
    )
    assert rows == [
        ("user", "", None),
        ("assistant", "", 2345),
        ("assistant", "", None),
        ("tool", "Bash", 120),
    ]
    rolled = LatencyUsage.objects.values_list("kind", "name", "sum_ms").order_by("kind")
    assert list(rolled) == [("call", "", 2345), ("tool", "Bash", 120)]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["-5", "soon", "1e99"])
def test_a_claude_code_duration_fleet_cannot_store_is_left_out_not_refused(
    client: Client, token: str, value: str
) -> None:
    request = (("api_request", {**TURN[1][1], "duration_ms": value}),)

    result = logs_answer(post(client, claude_code_export(*request), token, path=LOGS))

    assert not result.HasField("partial_success")
    assert Message.objects.get(session__key="cc-1").duration_ms is None


@pytest.mark.django_db
def test_a_retried_claude_code_export_adds_nothing(client: Client, token: str) -> None:
    body = claude_code_export(*TURN)
    logs_answer(post(client, body, token, path=LOGS))

    logs_answer(post(client, body, token, path=LOGS))

    session = Session.objects.get(key="cc-1")
    assert (session.message_count, session.cost_usd) == (4, Decimal("0.0123"))


@pytest.mark.django_db
def test_a_logged_prompt_and_an_api_error_and_a_failed_tool(client: Client, token: str) -> None:
    body = claude_code_export(
        ("user_prompt", {"prompt_length": "5", "prompt": "hello"}),
        ("api_error", {"model": "claude-opus-4", "error": "overloaded", "status_code": "529"}),
        ("tool_result", {"tool_name": "Read", "success": "false", "error": "no such file"}),
    )

    logs_answer(post(client, body, token, path=LOGS))

    rows = list(
        Message.objects.filter(session__key="cc-1")
        .order_by("seq")
        .values_list("role", "content", "status")
    )
    assert rows == [
        ("user", "hello", ""),
        ("assistant", None, "error"),
        ("assistant", None, ""),
        ("tool", "no such file", "error"),
    ]
    # The newest event failed: the session's turn (Claude Code's prompt.id) is in error.
    session = Session.objects.get(key="cc-1")
    assert (session.state, session.turn_id) == ("error", "7f0c0d1e-prompt")


def codex_export(*events: dict[str, Any], conversation: str = "codex-conv-1") -> bytes:
    """Records shaped as Codex CLI sends them: ``event.name`` names the event,
    ``conversation.id`` the session; token counts as integers."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    attribute = resource_logs.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "codex_cli_rs"
    records = resource_logs.scope_logs.add().log_records
    for index, fields in enumerate(events, start=1):
        record = records.add()
        record.time_unix_nano = T0 + index * SECOND
        values = {
            "conversation.id": conversation,
            "app.version": "0.137.0",
            "terminal.type": "iTerm.app",
            "model": "gpt-5.1-codex",
            **fields,
        }
        for name, value in values.items():
            attribute = record.attributes.add()
            attribute.key = name
            if isinstance(value, int):
                attribute.value.int_value = value
            else:
                attribute.value.string_value = value
    return request.SerializeToString()


CODEX_TURN = (
    {"event.name": "codex.conversation_starts", "provider_name": "openai"},
    {"event.name": "codex.user_prompt", "prompt_length": 17, "prompt": "[REDACTED]"},
    {"event.name": "codex.api_request", "attempt": 1, "http.response.status_code": "200"},
    {"event.name": "codex.sse_event", "event.kind": "response.output_text.delta"},
    {
        "event.name": "codex.sse_event",
        "event.kind": "response.completed",
        "response.id": "resp_123",
        "input_token_count": 5000,
        "output_token_count": 300,
        "cached_token_count": 4000,
        "reasoning_token_count": 120,
        "tool_token_count": 0,
    },
    {
        "event.name": "codex.tool_result",
        "tool_name": "shell",
        "call_id": "call_abc",
        "arguments": '{"command": ["ls"]}',
        "duration_ms": 40,
        "success": "true",
        "output": "README.md",
    },
)


@pytest.mark.django_db
def test_a_codex_turn_lands_with_openai_token_counts(client: Client, token: str) -> None:
    result = logs_answer(post(client, codex_export(*CODEX_TURN), token, path=LOGS))

    message = result.partial_success.error_message
    assert result.partial_success.rejected_log_records == 3
    assert "Codex event 'conversation_starts'" in message
    assert "Codex event 'api_request'" in message  # it succeeded: the usage comes below
    assert "Codex event 'sse_event' of kind 'response.output_text.delta'" in message
    session = Session.objects.get(key="codex-conv-1")
    assert (session.agent, session.model) == ("codex_cli_rs", "gpt-5.1-codex")
    rows = list(
        Message.objects.filter(session=session)
        .order_by("seq")
        .values_list("role", "content", "provider_response_id", "tool_call_id")
    )
    assert rows == [
        ("user", None, "", ""),  # the prompt was redacted: no text, not "[REDACTED]"
        ("assistant", None, "resp_123", ""),
        ("assistant", None, "", ""),
        ("tool", "README.md", "", "call_abc"),
    ]
    # OpenAI's input count includes the cached part: stored as sent.
    assert (session.prompt_tokens, session.cache_read_tokens) == (5000, 4000)
    assert (session.completion_tokens, session.reasoning_tokens) == (300, 120)
    assert session.tool_call_count == 1
    assert Message.objects.get(session=session, role="tool").duration_ms == 40
    assert Message.objects.get(session=session, seq=2).cost_source in ("computed", "unpriced")

    logs_answer(post(client, codex_export(*CODEX_TURN), token, path=LOGS))  # a retry

    assert Session.objects.get(key="codex-conv-1").message_count == 4


@pytest.mark.django_db
def test_a_failed_codex_request_is_an_error_message(client: Client, token: str) -> None:
    body = codex_export(
        {
            "event.name": "codex.api_request",
            "attempt": 2,
            "http.response.status_code": "429",
            "error.message": "rate limited",
        }
    )

    logs_answer(post(client, body, token, path=LOGS))

    message = Message.objects.get(session__key="codex-conv-1")
    assert (message.role, message.status) == ("assistant", "error")


@pytest.mark.django_db
def test_other_log_records_are_rejected_not_pretended_stored(client: Client, token: str) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add().body.string_value = "GET /health 200"
    records.add().body.string_value = "codex.api_request"
    records.add().body.string_value = "claude_code.api_request"  # no session.id

    result = logs_answer(post(client, request.SerializeToString(), token, path=LOGS))

    assert result.partial_success.rejected_log_records == 3
    message = result.partial_success.error_message
    assert "1 log record not mapped: not a Claude Code or Codex event" in message
    assert "1 log record not mapped: Codex event 'api_request'" in message  # succeeded
    assert "1 log record refused: a Claude Code event without session.id" in message
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_claude_code_events_as_otlp_json(client: Client, token: str) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    document = json_format.MessageToDict(
        ExportLogsServiceRequest.FromString(claude_code_export(*TURN[:2]))
    )

    response = post(
        client, json.dumps(document).encode(), token, path=LOGS, content_type="application/json"
    )

    assert response.status_code == 200
    assert response.json() == {}
    assert Session.objects.get(key="cc-1").message_count == 2


# --- a real exporter against a live server ------------------------------------


@pytest.fixture
def live_token(transactional_db: Any) -> str:
    return ApiKey.generate(name="live")[1]


@pytest.fixture
def exporter(live_server: Any, live_token: str) -> Iterator[OTLPSpanExporter]:
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}{TRACES}",
        headers={"Authorization": f"Bearer {live_token}"},
        timeout=10,
    )
    yield exporter
    exporter.shutdown()


def test_the_official_exporter_lands_sessions_messages_and_tokens_exactly(
    exporter: OTLPSpanExporter,
) -> None:
    recorder = Recorder(service="research-agent")
    for turn in range(3):
        chat(
            recorder,
            "live-conv",
            at=T0 + turn * 10 * SECOND,
            prompt=f"question {turn}",
            answer=f"answer {turn}",
        )
    chat(recorder, "live-other", answer="elsewhere")

    assert exporter.export(recorder.spans) == SpanExportResult.SUCCESS

    session = Session.objects.get(key="live-conv")
    assert session.agent == "research-agent"
    assert (session.turns, session.api_calls, session.message_count) == (3, 3, 6)
    assert (session.prompt_tokens, session.completion_tokens, session.cache_read_tokens) == (
        3600,
        240,
        3000,
    )
    contents = list(
        Message.objects.filter(session=session).order_by("seq").values_list("content", flat=True)
    )
    assert contents == [
        "question 0",
        "answer 0",
        "question 1",
        "answer 1",
        "question 2",
        "answer 2",
    ]
    assert Session.objects.get(key="live-other").turns == 1

    # The exporter retries an export whose answer it lost: nothing is added.
    assert exporter.export(recorder.spans) == SpanExportResult.SUCCESS
    assert Message.objects.filter(session=session).count() == 6
    assert Session.objects.get(key="live-conv").prompt_tokens == 3600


def test_the_official_exporter_with_gzip_and_a_bad_key(live_server: Any, live_token: str) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    recorder = Recorder()
    chat(recorder, "live-gzip", answer="compressed")
    good = OTLPSpanExporter(
        endpoint=f"{live_server.url}{TRACES}",
        headers={"Authorization": f"Bearer {live_token}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    bad = OTLPSpanExporter(
        endpoint=f"{live_server.url}{TRACES}",
        headers={"Authorization": "Bearer fleet_not_a_key"},
        timeout=10,
    )

    assert bad.export(recorder.spans) == SpanExportResult.FAILURE
    assert not Session.objects.exists()
    assert good.export(recorder.spans) == SpanExportResult.SUCCESS
    assert Message.objects.get(session__key="live-gzip").content == "compressed"


# --- no input is a crash --------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_message_lists = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "assistant", "tool", "system", 7]),
            "content": _values,
            "parts": st.one_of(
                _scalars,
                st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["text", "tool_call", "reasoning"])},
                        optional={"content": _values, "id": _values, "name": _values},
                    ),
                    max_size=3,
                ),
            ),
        },
    ),
    max_size=3,
).map(json.dumps)
_read_attributes = [
    "gen_ai.conversation.id",
    "session.id",
    "gen_ai.agent.name",
    "gen_ai.request.model",
    "gen_ai.response.id",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.tool.call.id",
    "gen_ai.tool.name",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id",
    "llm.input_messages.0.message.role",
    "llm.request.type",
    "gen_ai.prompt.0.role",
    "gen_ai.prompt.0.content",
    "gen_ai.completion.0.content",
    "gen_ai.completion.0.tool_calls.0.id",
]


@pytest.mark.django_db
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operation=st.sampled_from(["chat", "chat", "chat", "execute_tool", "invoke_agent", None]),
    attributes=st.dictionaries(st.sampled_from(_read_attributes), _values, max_size=8),
    inputs=st.one_of(_message_lists, st.none(), _values),
    outputs=st.one_of(_message_lists, st.none(), _values),
    times=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
)
def test_any_attribute_values_are_stored_or_rejected_never_a_crash(
    operation: str | None,
    attributes: dict[str, Any],
    inputs: Any,
    outputs: Any,
    times: tuple[int, int],
) -> None:
    values = dict(attributes)
    if operation:
        values["gen_ai.operation.name"] = operation
    if inputs is not None:
        values["gen_ai.input.messages"] = inputs
    if outputs is not None:
        values["gen_ai.output.messages"] = outputs
    span = SpanIn(
        trace_id="1" * 32,
        span_id="2" * 16,
        start_ns=times[0],
        end_ns=times[1],
        attributes=values,
        resource={"service.name": "fuzz"},
    )

    result = spans_ingest(spans=[span])

    assert result.accepted + result.rejected == 1


@pytest.mark.django_db
def test_genai_events_named_by_their_event_name_attribute_in_otlp_json(
    client: Client, token: str
) -> None:
    """The Events API of older SDKs names the event in the ``event.name``
    attribute, not the record's field; the body is a kvlist."""

    def record(name: str, body: dict[str, Any], at: int) -> dict[str, Any]:
        return {
            "timeUnixNano": str(at),
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "attributes": [
                {"key": "event.name", "value": {"stringValue": name}},
                {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
            ],
            "body": {
                "kvlistValue": {
                    "values": [
                        {"key": key, "value": {"stringValue": value}} for key, value in body.items()
                    ]
                }
            },
        }

    export = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "events-bot"}},
                        {"key": "session.id", "value": {"stringValue": "conv-json-events"}},
                    ]
                },
                "scopeLogs": [
                    {
                        "logRecords": [
                            record("gen_ai.user.message", {"content": "Hi?"}, T0),
                            record(
                                "gen_ai.choice",
                                {"index": "0", "finish_reason": "stop"},
                                T0 + SECOND,
                            ),
                        ]
                    }
                ],
            }
        ]
    }
    # The choice's message as a nested kvlist.
    choice_body = export["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]["body"]
    choice_body["kvlistValue"]["values"].append(
        {
            "key": "message",
            "value": {
                "kvlistValue": {"values": [{"key": "content", "value": {"stringValue": "Hello."}}]}
            },
        }
    )

    response = post(
        client, json.dumps(export).encode(), token, path=LOGS, content_type="application/json"
    )

    assert response.status_code == 200, response.content
    assert "partialSuccess" not in json.loads(response.content)
    assert _transcript("conv-json-events") == [("user", "Hi?", 0), ("assistant", "Hello.", 0)]
    assert Session.objects.get(key="conv-json-events").agent == "events-bot"


_event_bodies = st.one_of(
    _values,
    st.fixed_dictionaries(
        {},
        optional={
            "content": _values,
            "id": _values,
            "index": _values,
            "tool_calls": st.one_of(
                _values,
                st.lists(
                    st.fixed_dictionaries(
                        {}, optional={"id": _values, "function": _values, "name": _values}
                    ),
                    max_size=2,
                ),
            ),
            "message": st.one_of(_values, st.fixed_dictionaries({}, optional={"content": _values})),
        },
    ),
)
_event_names = st.sampled_from(
    [
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
    ]
)


@pytest.mark.django_db
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.tuples(_event_names, _event_bodies, st.integers(0, 2**64 - 1)), max_size=4),
    as_json=st.booleans(),
)
def test_any_genai_event_bodies_are_stored_or_rejected_never_a_crash(
    events: list[tuple[str, Any, int]], as_json: bool
) -> None:
    records = [
        LogIn(time_ns=at, body=body, event_name=name, trace_id="1" * 32, span_id="2" * 16)
        for name, body, at in events
    ]
    result = logs_ingest(records=records)
    assert result.accepted + result.rejected == len(records)

    span = SpanIn(
        trace_id="3" * 32,
        span_id="4" * 16,
        start_ns=T0,
        end_ns=T0 + SECOND,
        attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3},
        events=tuple(
            EventIn(
                name=name,
                time_ns=at,
                attributes={"gen_ai.event.content": json.dumps(body) if as_json else body},
            )
            for name, body, at in events
        ),
    )
    result = spans_ingest(spans=[span])
    assert result.accepted + result.rejected == 1


@pytest.mark.django_db
def test_ten_thousand_spans_in_one_export_all_land(client: Client, token: str) -> None:
    recorder = Recorder()
    for index in range(10_000):
        # 9 000 in one session (past the append batch of 1 000), the rest in ten others.
        conversation = "big" if index < 9_000 else f"small-{index % 10}"
        chat(recorder, conversation, at=T0 + index * SECOND)

    result = answer(post(client, recorder.protobuf(), token))

    assert not result.HasField("partial_success")
    big = Session.objects.get(key="big")
    assert (big.message_count, big.api_calls, big.last_seq) == (9_000, 9_000, 9_000)
    assert big.prompt_tokens == 9_000 * 1200
    assert Message.objects.count() == 10_000
    assert Session.objects.count() == 11


# --- an official GenAI instrumentation, against a fake provider ------------------


class _FakeOpenAI(BaseHTTPRequestHandler):
    """Answers every chat completion as OpenAI does, with usage."""

    turns = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).turns += 1
        body = json.dumps(
            {
                "id": f"chatcmpl-fake{self.turns}",
                "object": "chat.completion",
                "created": 1_767_225_600,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"answer {self.turns}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def semconv_mode() -> Iterator[None]:
    """OpenTelemetry reads OTEL_SEMCONV_STABILITY_OPT_IN once per process: read it
    again for this test (the instrumentation tests want different modes)."""
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
    )

    Stability._initialized = False
    yield
    Stability._initialized = False


@pytest.fixture
def fake_openai() -> Iterator[str]:
    _FakeOpenAI.turns = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.usefixtures("semconv_mode")
def test_the_official_openai_instrumentation_reaches_fleet_with_no_code_change(
    exporter: OTLPSpanExporter, fake_openai: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai import OpenAI
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    provider = TracerProvider(resource=Resource.create({"service.name": "quiz-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = OpenAI(base_url=fake_openai, api_key="sk-test")
        with provider.get_tracer("quiz").start_as_current_span("quiz round") as round_span:
            history: list[Any] = [{"role": "user", "content": "Capital of France?"}]
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=history)
            history += [
                {"role": "assistant", "content": reply.choices[0].message.content},
                {"role": "user", "content": "And of Spain?"},
            ]
            client.chat.completions.create(model="gpt-4o-mini", messages=history)
        trace_id = format(round_span.get_span_context().trace_id, "032x")
    finally:
        instrumentor.uninstrument()
        provider.shutdown()

    # The instrumentation names no conversation: the trace is the session.
    session = Session.objects.get(key=trace_id)
    assert (session.agent, session.turns, session.api_calls) == ("quiz-bot", 2, 2)
    assert (session.prompt_tokens, session.completion_tokens) == (60, 4)
    rows = list(
        Message.objects.filter(session=session)
        .order_by("seq")
        .values_list("role", "content", "provider_response_id", "model")
    )
    assert rows == [
        ("user", "Capital of France?", "", ""),
        ("assistant", "answer 1", "chatcmpl-fake1", "gpt-4o-mini-2024-07-18"),
        ("user", "And of Spain?", "", ""),
        ("assistant", "answer 2", "chatcmpl-fake2", "gpt-4o-mini-2024-07-18"),
    ]
    assert Message.objects.filter(session=session, cost_source="computed").count() == 2


# --- the older GenAI events (gen_ai.*.message, gen_ai.choice) ---------------------


class Captured:
    """What the official OpenAI instrumentation emits without the latest-conventions
    opt-in, content capture on: the chat span, and one log record per event in the
    span's context (``event_name`` ``gen_ai.user.message`` … ``gen_ai.choice``)."""

    def __init__(self, fake_openai: str, monkeypatch: pytest.MonkeyPatch) -> None:
        from openai import OpenAI
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor as LogProcessor

        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        resource = Resource.create({"service.name": "legacy-bot"})
        self.span_memory = InMemorySpanExporter()
        self.log_memory = InMemoryLogRecordExporter()
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_memory))
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(LogProcessor(self.log_memory))
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
        try:
            client = OpenAI(base_url=fake_openai, api_key="sk-test")
            history: list[Any] = [
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": "Capital of France?"},
            ]
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=history)
            history += [
                {"role": "assistant", "content": reply.choices[0].message.content},
                {"role": "user", "content": "And of Spain?"},
            ]
            client.chat.completions.create(model="gpt-4o-mini", messages=history)
        finally:
            instrumentor.uninstrument()
            tracer_provider.shutdown()
            logger_provider.shutdown()

    def traces(self) -> bytes:
        return encode_spans(self.span_memory.get_finished_spans()).SerializeToString()

    def logs(self) -> bytes:
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

        return encode_logs(self.log_memory.get_finished_logs()).SerializeToString()

    @property
    def trace_ids(self) -> list[str]:
        spans = self.span_memory.get_finished_spans()
        return [format(span.get_span_context().trace_id, "032x") for span in spans]


def _transcript(key: str) -> list[tuple[str, str | None, int]]:
    return list(
        Message.objects.filter(session__key=key)
        .order_by("seq")
        .values_list("role", "content", "prompt_tokens")
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("semconv_mode")
@pytest.mark.parametrize("logs_first", [True, False], ids=["events-first", "span-first"])
def test_the_older_genai_events_of_the_official_instrumentation_are_the_turns_content(
    client: Client,
    token: str,
    fake_openai: str,
    monkeypatch: pytest.MonkeyPatch,
    logs_first: bool,
) -> None:
    captured = Captured(fake_openai, monkeypatch)
    first, second = captured.trace_ids  # one trace per call: no parent span
    exports = [(LOGS, captured.logs()), (TRACES, captured.traces())]
    for path, body in exports if logs_first else exports[::-1]:
        assert post(client, body, token, path=path).status_code == 200

    # Only the new prompt of each call: the history it repeats is not stored
    # again. The answer is one message, its content from the choice event and
    # its usage from the span, whichever came first. A prompt whose event
    # comes after its span's export is appended after the answer (seq is the
    # order of arrival; its created_at is the event's).
    turn = [("user", "And of Spain?", 0), ("assistant", "answer 2", 30)]
    assert _transcript(second) == (turn if logs_first else turn[::-1])
    assert len(_transcript(first)) == 2
    assert ("assistant", "answer 1", 30) in _transcript(first)
    session = Session.objects.get(key=second)
    assert (session.agent, session.turns, session.api_calls, session.prompt_tokens) == (
        "legacy-bot",
        1,
        1,
        30,
    )

    # Both exports retried: nothing is added, nothing counted twice.
    for path, body in exports:
        assert post(client, body, token, path=path).status_code == 200
    assert _transcript(second) == (turn if logs_first else turn[::-1])
    assert Session.objects.get(key=second).turns == 1


@pytest.mark.django_db
def test_the_older_genai_events_as_span_events_are_the_turns_content(
    client: Client, token: str
) -> None:
    recorder = Recorder(service="azure-bot")
    span = recorder.tracer.start_span(
        "chat gpt-4o",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.conversation.id": "conv-events",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 9,
        },
        start_time=T0,
    )
    # As Azure's SDKs write them: the event's body as JSON in gen_ai.event.content.
    for name, body in (
        ("gen_ai.system.message", {"role": "system", "content": "Be brief."}),
        ("gen_ai.user.message", {"role": "user", "content": "Weather in Oslo?"}),
    ):
        span.add_event(
            name, {"gen_ai.system": "az.ai.inference", "gen_ai.event.content": json.dumps(body)}
        )
    choice = {
        "index": 0,
        "finish_reason": "tool_calls",
        "message": {
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
    }
    span.add_event("gen_ai.choice", {"gen_ai.event.content": json.dumps(choice)})
    span.end(end_time=T0 + SECOND)

    answer(post(client, recorder.protobuf(), token))

    rows = list(
        Message.objects.filter(session__key="conv-events")
        .order_by("seq")
        .values_list("role", "content", "tool_calls")
    )
    assert rows == [
        ("user", "Weather in Oslo?", []),
        (
            "assistant",
            "Let me look.",
            [{"id": "call_9", "name": "weather", "arguments": '{"city": "Oslo"}'}],
        ),
    ]


@pytest.mark.django_db
def test_a_tool_message_event_is_the_tool_result_of_its_call(client: Client, token: str) -> None:
    def event(name: str, body: dict[str, Any], at: int) -> LogIn:
        return LogIn(
            time_ns=at,
            body=body,
            event_name=name,
            trace_id="ab" * 16,
            span_id="cd" * 8,
            attributes={"gen_ai.system": "openai"},
            resource={"service.name": "tool-bot"},
        )

    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
    records = [
        event("gen_ai.user.message", {"content": "1+1?"}, T0),
        event("gen_ai.assistant.message", {"tool_calls": [call]}, T0 + 1),
        event("gen_ai.tool.message", {"content": "2", "id": "call_1"}, T0 + 2),
        event(
            "gen_ai.choice",
            {"index": 0, "finish_reason": "stop", "message": {"content": "2."}},
            T0 + 3,
        ),
    ]

    result = logs_ingest(records=records)

    assert (result.accepted, result.rejected) == (4, 0)
    rows = list(
        Message.objects.filter(session__key="ab" * 16)
        .order_by("seq")
        .values_list("role", "content", "tool_call_id")
    )
    # The history up to the tool's answer is the turn's new input after the
    # last assistant message: the tool result, then the answer.
    assert rows == [("tool", "2", "call_1"), ("assistant", "2.", "")]


_log_attributes = [
    "session.id",
    "conversation.id",
    "event.sequence",
    "event.kind",
    "prompt",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cost_usd",
    "input_token_count",
    "cached_token_count",
    "reasoning_token_count",
    "response.id",
    "tool_name",
    "tool_parameters",
    "call_id",
    "arguments",
    "success",
    "output",
    "error",
    "error.message",
    "http.response.status_code",
]
_log_values = st.one_of(_values, st.sampled_from(["12", "²", "١٢", "-3", "1e3", " 7 ", "false"]))


@pytest.mark.django_db
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=st.sampled_from(
        [
            "claude_code.user_prompt",
            "claude_code.api_request",
            "claude_code.api_error",
            "claude_code.tool_result",
            "codex.user_prompt",
            "codex.sse_event",
            "codex.tool_result",
            "codex.api_request",
            "other",
        ]
    ),
    attributes=st.dictionaries(st.sampled_from(_log_attributes), _log_values, max_size=10),
    times=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
)
def test_any_log_attribute_values_are_stored_or_rejected_never_a_crash(
    event: str, attributes: dict[str, Any], times: tuple[int, int]
) -> None:
    values = {"session.id": "s", "conversation.id": "c", **attributes}
    if event.startswith("codex."):
        values["event.name"] = event
    if event == "codex.sse_event" and "event.kind" not in attributes:
        values["event.kind"] = "response.completed"
    record = LogIn(time_ns=times[0], observed_ns=times[1], body=event, attributes=values)

    result = logs_ingest(records=[record])

    assert result.accepted + result.rejected == 1


def test_the_official_log_exporter_lands_claude_code_events(
    live_server: Any, live_token: str
) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    exporter = OTLPLogExporter(
        endpoint=f"{live_server.url}{LOGS}",
        headers={"Authorization": f"Bearer {live_token}"},
        timeout=10,
    )
    provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("com.anthropic.claude_code.events")
    for sequence, (event, fields) in enumerate(TURN[:2], start=1):
        logger.emit(
            timestamp=T0 + sequence * SECOND,
            body=f"claude_code.{event}",
            attributes={
                "event.name": event,
                "event.sequence": sequence,
                "session.id": "cc-live",
                **fields,
            },
        )
    provider.shutdown()

    session = Session.objects.get(key="cc-live")
    assert (session.agent, session.message_count, session.api_calls) == ("claude-code", 2, 1)
    assert session.cost_usd == Decimal("0.0123")


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["\x00", "a\nb"])
def test_a_session_key_the_store_cannot_hold_rejects_its_records_and_spares_the_rest(
    key: str,
) -> None:
    def chat(span_id: str, conversation: str) -> SpanIn:
        return SpanIn(
            trace_id="1" * 32,
            span_id=span_id,
            start_ns=1_700_000_000_000_000_000,
            end_ns=1_700_000_001_000_000_000,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.conversation.id": conversation,
                "gen_ai.usage.input_tokens": 3,
            },
            resource={"service.name": "fuzz"},
        )

    result = spans_ingest(spans=[chat("2" * 16, key), chat("3" * 16, "good")])

    assert (result.accepted, result.rejected) == (1, 1)
    assert "refused for session" in result.message
    assert list(Session.objects.values_list("key", flat=True)) == ["good"]
