"""Structured logs: a JSON formatter, one line per API request, one per command run.

Every line is one JSON object (``FLEET_LOG_FORMAT=json``, the default) with
``time``, ``level``, ``logger`` and ``message``, plus the fields of the event:

- ``fleet.request``: ``method``, ``path`` (never the query string: a search
  query is message text), ``status``, ``duration_ms``, ``key`` (the API key's
  *name*; never the key itself) and, for an append, ``appended``.
- ``fleet.command``: ``command``, ``exit_code``, ``duration_ms`` (never the
  arguments: ``simulate_fleet --key`` carries a key).

Nothing here logs a message's content, a request or response body, or a key.
This module imports no settings, so gunicorn's master can use the formatter.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

request_logger = logging.getLogger("fleet.request")
command_logger = logging.getLogger("fleet.command")

# Attributes every LogRecord has: anything else was passed in ``extra``.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_PLAIN = (str, int, float, bool, type(None), list, dict)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; fields passed in ``extra`` become keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            # Plain values only: Django passes the request object in ``extra``,
            # and its repr holds the query string.
            if name not in _RECORD_FIELDS and isinstance(value, _PLAIN):
                line[name] = value
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


# --- one line per API request ----------------------------------------------------


class RequestLogMiddleware:
    """Logs one ``fleet.request`` line per request to the JSON API (``/api/``).

    Put it first in ``MIDDLEWARE`` so the duration covers the whole stack.
    """

    prefix = "/api/"

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if not request.path.startswith(self.prefix):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        fields: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "key": _key_name(request),
        }
        appended = _appended(request, response)
        if appended is not None:
            fields["appended"] = appended
        text = f"{request.method} {request.path} {response.status_code} {duration_ms} ms"
        if fields["key"]:
            text += f" key={fields['key']}"
        if appended is not None:
            text += f" appended={appended}"
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        request_logger.log(level, text, extra=fields)
        return response


def _key_name(request: Any) -> str | None:
    # The API's auth puts the ApiKey on request.auth once the key is accepted.
    name = getattr(getattr(request, "auth", None), "name", None)
    return name if isinstance(name, str) else None


def _appended(request: Any, response: Any) -> int | None:
    """How many messages an append stored (its answer says), else ``None``."""
    if (
        request.method != "POST"
        or not request.path.endswith("/messages")
        or response.status_code not in (200, 201)
        or getattr(response, "streaming", False)
    ):
        return None
    try:
        value = json.loads(response.content).get("appended")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


# --- one line per management command run -----------------------------------------


@contextmanager
def command_logged(name: str) -> Iterator[None]:
    """Log one ``fleet.command`` line for the command ``name`` run inside the block.

    The exit code is 0 when the block ends, the code of a ``SystemExit``
    (``CommandError`` ends in ``sys.exit(returncode)``), else 1 (Python's for
    an uncaught exception). The exception is never swallowed.
    """
    started = time.perf_counter()
    exit_code: int | str = 1
    try:
        yield
        exit_code = 0
    except SystemExit as exc:
        exit_code = 0 if exc.code is None else exc.code
        raise
    finally:
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        command_logger.log(
            logging.ERROR if exit_code != 0 else logging.INFO,
            f"manage.py {name} exited {exit_code} after {duration_ms} ms",
            extra={"command": name, "exit_code": exit_code, "duration_ms": duration_ms},
        )


def execute_from_command_line(argv: list[str]) -> None:
    """``manage.py``'s entry: Django's, logging one line per command run.

    Explicit here rather than a patch of ``BaseCommand.run_from_argv``, so it
    covers Django's own commands (``migrate``, ``check``) as well as ours.
    ``call_command`` from code and tests is not logged; neither is
    ``manage.py`` without a command, nor ``--help``/``--version``.
    """
    from django.core.management import execute_from_command_line as django_execute

    if len(argv) < 2 or argv[1].startswith("-"):
        django_execute(argv)
        return
    with command_logged(argv[1]):
        django_execute(argv)
