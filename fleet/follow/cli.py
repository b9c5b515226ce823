"""``fleet-follow``: mirror an agent's own store into a remote Fleet, live.

    fleet-follow FORMAT PATH --url URL --key-file PATH [--agent NAME]
                 [--interval 2s] [--state PATH] [--once] [--dry-run] [--mirror-deletes]

The key comes from ``--key-file`` or the ``FLEET_KEY`` environment variable,
never from the command line (it would show in ``ps``).

No database and no Django settings: the readers validate messages with
``sessions.inputs``, which reads a few limits from Django's settings and
needs the ``sessions`` app's models (their fields define a message). So
``configure`` sets up Django in-process with only that app, the server's
default limits (or the same ``FLEET_MAX_*`` environment variables the
server reads) and **no database** (Django's dummy backend: any query would
fail loudly, and none is made). ``DJANGO_SETTINGS_MODULE`` is ignored.

Exit status: 0 done (or stopped by SIGTERM/SIGINT); 1 ``--once`` met errors
(unreadable records, refusals: reported above); 2 bad arguments, no key or an
unreadable store with ``--once``; 3 the server refused the key (401/403);
75 ``--once`` gave up on an unavailable server (nothing lost: the next run
resumes from the cursor).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_KEY_REFUSED = 3
EXIT_UNAVAILABLE = 75
ONCE_ATTEMPTS = 6  # --once: tries of one request before giving up (about 30 s)

# The server's defaults (fleet/settings.py; tests/test_follow.py checks they agree).
LIMITS = {
    "FLEET_MAX_MESSAGE_CHARS": 2_000_000,
    "FLEET_MAX_METADATA_BYTES": 64 * 1024,
    "FLEET_MAX_TODO_CHARS": 256 * 1024,
    "FLEET_MAX_GOAL_CHARS": 16 * 1024,
    "FLEET_API_MAX_BATCH": 1000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")

log = logging.getLogger("fleet.follow")


def configure() -> None:
    """Django for the readers: the ``sessions`` app, no database (see the module docstring)."""
    import django
    from django.conf import settings

    if settings.configured:  # in-process (the tests): the host's settings stand
        return
    limits = {name: int(os.environ.get(name, default)) for name, default in LIMITS.items()}
    settings.configure(
        INSTALLED_APPS=["sessions"], DATABASES={}, USE_TZ=True, TIME_ZONE="UTC", **limits
    )
    django.setup()


def duration(text: str) -> float:
    """``2s``, ``500ms``, ``1m`` or plain seconds."""
    found = _DURATION.match(text)
    if not found:
        raise argparse.ArgumentTypeError(f"not a duration such as 2s, 500ms or 1m: {text!r}")
    value = float(found[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[found[2]]
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above zero")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleet-follow",
        # No abbreviations: `--key SECRET` must not be read as `--key-file SECRET`.
        allow_abbrev=False,
        description="Mirror an agent's own store (zeph, zeroclaw, appam, koda) into a "
        "Fleet server over its JSON API, live. The key comes from --key-file or FLEET_KEY.",
    )
    p.add_argument("format", choices=["appam", "koda", "zeph", "zeroclaw"])
    p.add_argument("path", type=Path, help="the store: a SQLite file, or zeroclaw's JSONL folder")
    p.add_argument("--url", required=True, help="the Fleet server, e.g. https://fleet.example")
    p.add_argument("--key-file", type=Path, help="a file holding the API key (else FLEET_KEY)")
    p.add_argument("--agent", help="the agent name of every session (else the format's own)")
    p.add_argument("--interval", type=duration, default=2.0, help="poll interval (default 2s)")
    p.add_argument("--state", type=Path, help="the cursor file (default under ~/.local/state)")
    p.add_argument("--once", action="store_true", help="one pass, then exit (cron)")
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; send none")
    p.add_argument(
        "--mirror-deletes",
        action="store_true",
        help="delete in Fleet the sessions deleted from the store (default: keep them)",
    )
    p.add_argument(
        "--batch", type=int, default=LIMITS["FLEET_API_MAX_BATCH"], help="messages per request"
    )
    p.add_argument(
        "--max-backoff", type=duration, default=30.0, help="longest wait between retries (30s)"
    )
    return p


class NoKey(Exception):
    """No usable API key."""


def read_key(key_file: Path | None) -> str:
    if key_file is not None:
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise NoKey(f"cannot read the key file {key_file}: {exc.strerror}") from None
        if not key:
            raise NoKey(f"the key file {key_file} is empty")
        return key
    key = os.environ.get("FLEET_KEY", "").strip()
    if not key:
        raise NoKey("no API key: pass --key-file PATH or set FLEET_KEY")
    return key


class DryRun:
    """A transport that prints each request and answers as an empty Fleet would."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        import json

        if method == "GET":
            return 404, None
        if method == "POST" and isinstance(body, dict):
            messages = body["messages"]
            ids = f"{messages[0].get('message_id')} … {messages[-1].get('message_id')}"
            print(f"POST {path}: {len(messages)} message(s) {ids}", file=self.out)
            return 200, {"appended": len(messages), "skipped": 0}
        text = "" if body is None else " " + json.dumps(body, ensure_ascii=False)[:500]
        print(f"{method} {path}{text}", file=self.out)
        return (204, None) if method == "DELETE" else (200, {})


def main(argv: Sequence[str] | None = None, *, stop: threading.Event | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s fleet-follow %(message)s", stream=sys.stderr
    )
    try:
        key = "" if args.dry_run else read_key(args.key_file)
    except NoKey as exc:
        print(f"fleet-follow: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure()
    return follow(args, key, stop or threading.Event())


def follow(args: argparse.Namespace, key: str, stop: threading.Event) -> int:
    # Imported once Django is configured (the readers need its app registry).
    from fleet.follow.follower import Follower
    from fleet.follow.remote import RemoteWriter, Transport
    from fleet.follow.state import State, default_state_path
    from fleet.follow.transport import Backoff, KeyRefused, RetryingTransport, Unavailable
    from fleet.simulator.client import ApiClient

    path: Path = args.path
    source = {"format": args.format, "path": str(path.resolve()), "url": args.url.rstrip("/")}
    state_path = args.state or default_state_path(args.format, path, source["url"])
    state, why = State.load(state_path, source)
    if why:
        log.info(why)
    transport: Transport
    client: ApiClient | None = None
    if args.dry_run:
        transport = DryRun(sys.stdout)
    else:
        try:
            client = ApiClient(args.url, key)
        except ValueError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        transport = RetryingTransport(
            client,
            Backoff(cap=args.max_backoff),
            stop=stop,
            log=log.info,
            attempts=ONCE_ATTEMPTS if args.once else None,
        )
    writer = RemoteWriter(transport, agent=args.agent, batch=max(1, args.batch), log=log.info)
    follower = Follower(
        fmt=args.format,
        path=path,
        writer=writer,
        state=state,
        state_path=None if args.dry_run else state_path,
        mirror_deletes=args.mirror_deletes,
        log=log.info,
        stop=stop,
    )
    restore = _stop_on_signals(stop)
    failure = ""
    try:
        while True:
            report = follower.sync()
            # A store that cannot be read (not created yet) is said once, not every poll.
            repeated = bool(report.failure) and report.failure == failure
            if args.once or (report.busy and not repeated):
                log.info("%s", report.line())
            failure = report.failure
            if args.once:
                if report.failure:
                    return EXIT_USAGE
                return EXIT_ERRORS if report.errors else 0
            if stop.wait(args.interval):
                return 0
    except KeyRefused as exc:
        log.error("%s; stopping", exc)
        return EXIT_KEY_REFUSED
    except Unavailable as exc:
        if stop.is_set():
            return 0
        log.error("Fleet is unavailable: %s; the next run resumes from the cursor", exc)
        return EXIT_UNAVAILABLE
    finally:
        restore()
        if client is not None:
            client.close()


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT end the loop after the request under way; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {number: signal.signal(number, handle) for number in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


if __name__ == "__main__":
    sys.exit(main())
