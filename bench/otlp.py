"""OTLP benchmark: GenAI spans into Fleet's OTLP receiver, against the JSON API.

Run: ``.venv/bin/python bench/otlp.py`` (about a minute; ``--quick`` for a
smoke run). It migrates a fresh SQLite database in a temporary directory,
makes an API key, starts ``gunicorn fleet.wsgi`` (2 sync workers) on a free
loopback port and prints, for the same turns (``--spans`` model calls, 20 per
session, a prompt and an answer of a few hundred bytes, token counts):

(a) OTLP: spans per second, the export requests (512 spans each, as the SDK's
    BatchSpanProcessor sends them, encoded by the SDK's own encoder before the
    clock starts) posted back to back by one client; every message checked in
    the database afterwards;
(b) the JSON API: turns per second, 20 turns (40 messages) per append, one
    client, bodies encoded before the clock starts; and (a)/(b) — target
    >= 0.7 (the mapping must not cost more than the HTTP work);
(info) the official SDK end to end: spans made with a TracerProvider and
    exported by ``BatchSpanProcessor(OTLPSpanExporter)``, from the first span
    to the last one stored.

Arize Phoenix, the peer the issue compares with, is not run here (see
bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from ingest import Gunicorn, manage, server_env
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PER_SESSION = 20
EXPORT_BATCH = 512
T0 = 1_767_225_600_000_000_000
PROMPT = (
    "The nightly import failed again with 'database is locked' after 30 s. "
    "Look at sessions/importers and tell me whether the batches hold the write "
    "lock across the whole file, and what a safe batch size would be. "
)
ANSWER = (
    "Each batch is one transaction, so the lock is held per batch, not per file. "
    "The timeout comes from the dashboard's long read overlapping a 1 000-message "
    "batch; 250 messages keep every write under 200 ms on this disk. "
)


def make_spans(
    count: int, prefix: str, processor: Any = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """``count`` chat spans made with the official SDK (kept in memory, or exported)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent"}))
    provider.add_span_processor(processor or SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench.otlp")
    inputs = json.dumps([{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}])
    outputs = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": ANSWER}]}])
    for index in range(count):
        span = tracer.start_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.conversation.id": f"{prefix}-{index // PER_SESSION}",
                "gen_ai.usage.input_tokens": 1800 + index % 300,
                "gen_ai.usage.output_tokens": 90 + index % 40,
                "gen_ai.usage.cache_read.input_tokens": 1500,
                "gen_ai.input.messages": inputs,
                "gen_ai.output.messages": outputs,
            },
            start_time=T0 + index * 1_000_000_000,
        )
        span.end(end_time=T0 + index * 1_000_000_000 + 700_000_000)
    return provider, memory


def stored(db: Path, prefix: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM agent_sessions_message m JOIN agent_sessions_session s"
            " ON s.id = m.session_id WHERE s.key LIKE ?",
            (f"{prefix}-%",),
        ).fetchone()
    return int(count)


def post_all(url: str, token: str, bodies: list[tuple[str, bytes, str]]) -> float:
    """POST each (path, body, content type) back to back; seconds taken."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    for path, body, content_type in bodies:
        response = session.post(
            url + path, data=body, headers={"Content-Type": content_type}, timeout=120
        )
        if response.status_code not in (200, 201):
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - started


def otlp_bodies(spans: tuple[ReadableSpan, ...]) -> list[tuple[str, bytes, str]]:
    return [
        (
            "/otlp/v1/traces",
            encode_spans(spans[start : start + EXPORT_BATCH]).SerializeToString(),
            "application/x-protobuf",
        )
        for start in range(0, len(spans), EXPORT_BATCH)
    ]


def api_bodies(count: int, prefix: str) -> list[tuple[str, bytes, str]]:
    bodies = []
    for session in range(count // PER_SESSION):
        messages: list[dict[str, Any]] = []
        for index in range(session * PER_SESSION, (session + 1) * PER_SESSION):
            messages += [
                {"message_id": f"u{index}", "role": "user", "content": PROMPT},
                {
                    "message_id": f"a{index}",
                    "role": "assistant",
                    "content": ANSWER,
                    "model": "gpt-4o",
                    "usage": {
                        "prompt_tokens": 1800 + index % 300,
                        "completion_tokens": 90 + index % 40,
                        "cache_read_tokens": 1500,
                    },
                },
            ]
        body = json.dumps({"session": {"agent": "bench-agent"}, "messages": messages})
        bodies.append(
            (f"/api/v1/sessions/{prefix}-{session}/messages", body.encode(), "application/json")
        )
    return bodies


def sdk_end_to_end(url: str, token: str, db: Path, count: int) -> float:
    exporter = OTLPSpanExporter(
        endpoint=f"{url}/otlp/v1/traces", headers={"Authorization": f"Bearer {token}"}, timeout=120
    )
    processor = BatchSpanProcessor(
        exporter,
        max_queue_size=count,
        max_export_batch_size=EXPORT_BATCH,
        schedule_delay_millis=200,
    )
    started = time.perf_counter()
    provider, _ = make_spans(count, "sdk", processor)
    provider.force_flush(timeout_millis=600_000)
    seconds = time.perf_counter() - started
    provider.shutdown()
    if stored(db, "sdk") != 2 * count:
        raise SystemExit(f"the SDK's export stored {stored(db, 'sdk')} of {2 * count} messages")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=20_000, help="model-call spans per side")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="2 000 spans: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.spans = 2_000
    count = args.spans - args.spans % PER_SESSION

    workdir = Path(tempfile.mkdtemp(prefix="fleet-otlp-"))
    server = None
    try:
        db = workdir / "served.sqlite3"
        env = server_env(db)
        manage(env, "migrate", "--no-input", "-v0")
        token = manage(env, "create_api_key", "bench", "-v0")
        server = Gunicorn(env, workdir, args.workers)
        server.wait_ready()
        print(f"SQLite {sqlite3.sqlite_version}, gunicorn {args.workers} sync workers")
        _, memory = make_spans(count, "otlp")
        otlp = otlp_bodies(memory.get_finished_spans())
        api = api_bodies(count, "api")
        post_all(server.url, token, otlp_bodies(make_spans(40, "warm")[1].get_finished_spans()))

        otlp_seconds = post_all(server.url, token, otlp)
        if stored(db, "otlp") != 2 * count:
            raise SystemExit(f"OTLP stored {stored(db, 'otlp')} of {2 * count} messages")
        api_seconds = post_all(server.url, token, api)
        if stored(db, "api") != 2 * count:
            raise SystemExit(f"the JSON API stored {stored(db, 'api')} of {2 * count} messages")
        otlp_rate, api_rate = count / otlp_seconds, count / api_seconds
        ratio = otlp_rate / api_rate
        print(
            f"(a) OTLP: {count:,} spans in {len(otlp)} exports of {EXPORT_BATCH}: "
            f"{otlp_rate:,.0f} spans/s ({otlp_seconds:.1f} s)"
        )
        print(
            f"(b) JSON API: the same {count:,} turns, {PER_SESSION} per append: "
            f"{api_rate:,.0f} turns/s ({api_seconds:.1f} s); OTLP/API {ratio:.2f} "
            f"(target >= 0.7: {'met' if ratio >= 0.7 else 'MISSED'})"
        )
        seconds = sdk_end_to_end(server.url, token, db, count)
        print(
            f"(info) the official SDK, BatchSpanProcessor + OTLPSpanExporter, first span to "
            f"last stored: {count / seconds:,.0f} spans/s ({seconds:.1f} s)"
        )
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
