"""OpenTelemetry spans → sessions and messages and coding agents' log events (docs/OTLP.md).

The web layer (``fleet/otlp``) decodes OTLP/HTTP requests into ``SpanIn`` and
``LogIn`` records (plain values: hex ids, nanosecond times, attributes as
Python values); ``spans`` and ``logs`` (``claude_code``, ``codex``) map them
onto Fleet's model and ``store`` writes through ``services.messages_append_all``, as the importers
do. Rules they protect:

* **Deterministic keys and ids**: a span's session key and agent come from its
  own attributes or its resource, never from other spans of the export (a
  parent span usually ends, and is exported, after its children). Each message
  id derives from the trace and span id, so an exporter's retry adds nothing.
* **Nothing half-written, per session**: one session's messages of one export
  are one append (one transaction). A session that is refused (deleted key,
  outside the API key's scope, a bound) rejects its own spans only; the other
  sessions of the export are stored. A span whose values are invalid is
  rejected alone, before anything is written.
* **Order by the record's own time**: within an export a session's messages
  are appended by ``created_at`` (a model call's prompt at the span's start,
  its answer at the end); a span arriving in a later export is appended after
  what is stored, with its own ``created_at``.
* Spans with no GenAI attribute, and GenAI operations Fleet does not map
  (embeddings, retrieval, …), write nothing and are counted as rejected, with
  the reason, so the exporter's partial-success answer says what was left out.
"""

from sessions.otlp.events import GENAI_EVENTS, EventIn
from sessions.otlp.logs import logs_ingest
from sessions.otlp.records import LogIn
from sessions.otlp.spans import SpanIn, spans_ingest
from sessions.otlp.store import IngestResult

__all__ = [
    "GENAI_EVENTS",
    "EventIn",
    "IngestResult",
    "LogIn",
    "SpanIn",
    "logs_ingest",
    "spans_ingest",
]
