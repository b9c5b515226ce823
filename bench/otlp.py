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

``--phoenix``: instead of the above, Fleet against Arize Phoenix, the peer
the issue compares with, in the same run. Phoenix is installed on first use
into its own venv, ``var/bench-phoenix-venv`` (a few minutes; reused after),
and ``phoenix serve`` runs on loopback with its SQLite default in the
temporary directory. The same spans, made by the official SDK and exported by
``BatchSpanProcessor(OTLPSpanExporter)``, go to each store in turn, timed from
the first span made to the last one queryable (Fleet: its messages in the
database; Phoenix: the span count its GraphQL API answers); it prints both
rates, their ratio (target: Fleet >= 10x) and the load average of the machine
while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from ingest import Gunicorn, free_port, manage, server_env
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from raw_sqlite import ROOT

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


def sdk_batch_processor(endpoint: str, headers: dict[str, str], count: int) -> BatchSpanProcessor:
    """The official exporter behind a BatchSpanProcessor that keeps every span of the run."""
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=120)
    return BatchSpanProcessor(
        exporter,
        max_queue_size=max(count, EXPORT_BATCH),
        max_export_batch_size=EXPORT_BATCH,
        schedule_delay_millis=200,
    )


def sdk_end_to_end(url: str, token: str, db: Path, count: int, prefix: str = "sdk") -> float:
    """Seconds from the first span made to the last message stored in Fleet."""
    headers = {"Authorization": f"Bearer {token}"}
    processor = sdk_batch_processor(f"{url}/otlp/v1/traces", headers, count)
    started = time.perf_counter()
    provider, _ = make_spans(count, prefix, processor)
    provider.force_flush(timeout_millis=600_000)
    # Fleet answers an export once its messages are committed: stored now.
    seconds = time.perf_counter() - started
    provider.shutdown()
    if stored(db, prefix) != 2 * count:
        raise SystemExit(f"the SDK's export stored {stored(db, prefix)} of {2 * count} messages")
    return seconds


# --- Arize Phoenix, the peer ---------------------------------------------------------

PHOENIX = "arize-phoenix==20.26.1"  # the release the figures in bench/README.md were taken with
PHOENIX_VENV = ROOT / "var" / "bench-phoenix-venv"  # var/ is not tracked


def phoenix_command() -> Path:
    """``phoenix`` from its own venv, made and filled on first use (a few minutes)."""
    stamp = PHOENIX_VENV / "bench-installed.txt"
    if not stamp.exists() or stamp.read_text().strip() != PHOENIX:
        print(f"installing {PHOENIX} into {PHOENIX_VENV} (once; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PHOENIX_VENV)], check=True)
        pip = [str(PHOENIX_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, PHOENIX], check=True)
        stamp.write_text(PHOENIX + "\n")
    return PHOENIX_VENV / "bin" / "phoenix"


class Phoenix:
    """``phoenix serve`` on 127.0.0.1, its SQLite database in ``workdir``; stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "phoenix.log"
        home = workdir / "phoenix"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(
            PHOENIX_WORKING_DIR=str(home),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(free_port()),  # not the shared 4317
            PHOENIX_TELEMETRY_ENABLED="false",
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(phoenix_command()), "serve"], cwd=home, env=env, stdout=log, stderr=log
            )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"phoenix serve did not start:\n{self.log.read_text()[-3000:]}")

    def span_count(self) -> int:
        """Spans Phoenix answers for, over all its projects (its GraphQL API, as its UI asks)."""
        query = "{ projects { edges { node { recordCount } } } }"
        response = requests.post(f"{self.url}/graphql", json={"query": query}, timeout=30)
        response.raise_for_status()
        edges = response.json()["data"]["projects"]["edges"]
        return sum(int(edge["node"]["recordCount"]) for edge in edges)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def phoenix_end_to_end(phoenix: Phoenix, count: int, prefix: str) -> tuple[float, float]:
    """Seconds from the first span made to the exports answered, and to the last one counted."""
    expected = phoenix.span_count() + count
    processor = sdk_batch_processor(f"{phoenix.url}/v1/traces", {}, count)
    started = time.perf_counter()
    provider, _ = make_spans(count, prefix, processor)
    provider.force_flush(timeout_millis=600_000)
    # Phoenix answers an export once it is queued; its writer inserts later.
    answered = time.perf_counter() - started
    deadline = time.monotonic() + max(300.0, count / 10)
    seen = phoenix.span_count()
    while seen < expected and time.monotonic() < deadline:
        time.sleep(0.5)  # each count is a query on Phoenix's event loop: not too often
        seen = phoenix.span_count()
    seconds = time.perf_counter() - started
    provider.shutdown()
    if seen != expected:
        raise SystemExit(f"Phoenix counts {seen - expected + count} of {count} spans")
    return answered, seconds


class LoadAverage:
    """The machine's 1-minute load average, sampled every second while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadAverage:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        mean = sum(self.samples) / len(self.samples)
        return f"{min(self.samples):.2f}-{max(self.samples):.2f} (mean {mean:.2f})"


def compare_with_phoenix(workdir: Path, url: str, token: str, db: Path, count: int) -> None:
    """Fleet and Phoenix side by side: the same SDK export, each to its own store."""
    phoenix = Phoenix(workdir)
    try:
        started = time.perf_counter()
        phoenix.wait_ready()
        print(f"Phoenix ({PHOENIX}) ready in {time.perf_counter() - started:.0f} s", flush=True)
        # A first small export to each, so neither run pays its store's warm-up.
        sdk_end_to_end(url, token, db, 40, "warm")
        phoenix_end_to_end(phoenix, 40, "warm")
        cores = os.cpu_count()
        print(f"load average before: {os.getloadavg()[0]:.2f} on {cores} cores", flush=True)
        with LoadAverage() as fleet_load:
            fleet_seconds = sdk_end_to_end(url, token, db, count, "fleet")
        fleet_rate = count / fleet_seconds
        print(
            f"Fleet OTLP: {count:,} spans, first made to last stored: "
            f"{fleet_rate:,.0f} spans/s ({fleet_seconds:.1f} s); load {fleet_load.summary()}",
            flush=True,
        )
        with LoadAverage() as phoenix_load:
            answered, phoenix_seconds = phoenix_end_to_end(phoenix, count, "phoenix")
        phoenix_rate = count / phoenix_seconds
        print(
            f"Phoenix: the same {count:,} spans, first made to last queryable: "
            f"{phoenix_rate:,.0f} spans/s ({phoenix_seconds:.1f} s; every export answered "
            f"after {answered:.1f} s); load {phoenix_load.summary()}"
        )
        log = phoenix.log.read_text(errors="replace")
        refused = log.count('"POST /v1/traces HTTP/1.1" 503')
        print(f"(info) Phoenix answered {refused} exports 503 (at capacity); the SDK retried them")
        ratio = fleet_rate / phoenix_rate
        print(f"Fleet/Phoenix {ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'MISSED'})")
    finally:
        phoenix.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=20_000, help="model-call spans per side")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="2 000 spans: a smoke run")
    parser.add_argument(
        "--phoenix",
        action="store_true",
        help="Fleet against Arize Phoenix instead (installs it into var/bench-phoenix-venv)",
    )
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
        if args.phoenix:
            compare_with_phoenix(workdir, server.url, token, db, count)
            return 0
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
