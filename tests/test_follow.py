"""fleet-follow: the remote writer, the cursor, the loop and the command.

The proof that no format knowledge is written twice: a store written
through the remote writer into a live server gives exactly what
``import_sessions`` gives locally (``test_the_remote_writer_gives_what_the_local_import_gives``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_django.live_server_helper import LiveServer

from fleet.follow.follower import Follower
from fleet.follow.remote import RemoteWriter
from fleet.follow.state import State
from fleet.follow.transport import Backoff, RetryingTransport
from fleet.simulator.client import ApiClient
from sessions.models import ApiKey, DailyUsage, Message, Session, Tombstone
from tests.import_stores import (
    appam_store,
    run_import,
    zeph_store,
    zeroclaw_db,
    zeroclaw_folder,
)
from tests.test_import_appam import row as appam_row
from tests.test_import_koda import build as koda_build
from tests.test_import_zeph import row as zeph_row

MTIME = datetime(2026, 2, 10, 9, 30, 15, 250000, tzinfo=UTC)


# --- stores -------------------------------------------------------------------------


def zeroclaw_files(folder: Path) -> Path:
    zeroclaw_folder(
        folder,
        {
            "telegram_123": [
                {"role": "user", "content": "remind me at 5"},
                {
                    "role": "assistant",
                    "content": json.dumps(
                        {
                            "content": "Looking.",
                            "tool_calls": [{"id": "c1", "name": "clock", "arguments": "{}"}],
                        }
                    ),
                },
                {"role": "tool", "content": json.dumps({"tool_call_id": "c1", "content": "16:59"})},
                "not json",
                {"role": "assistant", "content": "Sure, I'll remind you."},
            ],
            "workspace_notes": [{"role": "system", "content": "You are zeroclaw."}],
        },
    )
    for file in folder.glob("*.jsonl"):
        os.utime(file, (MTIME.timestamp(), MTIME.timestamp()))
    return folder


def zeroclaw_sqlite(path: Path) -> Path:
    return zeroclaw_db(
        path,
        metadata=[
            {
                "session_key": "discord_42_ab",
                "created_at": "2026-02-01T10:00:00+00:00",
                "last_activity": "2026-02-01T10:05:00.123456+00:00",
                "message_count": 2,
                "name": "dana on discord",
                "state": "running",
                "turn_id": "turn-7",
                "turn_started_at": "2026-02-01T10:04:59+00:00",
                "agent_alias": "clamps",
                "channel_id": "discord.clamps",
                "room_id": "1122334455",
                "sender_id": "42",
            },
            {
                "session_key": "telegram_7",
                "created_at": "2026-02-02T10:00:00Z",
                "last_activity": "2026-02-02T11:00:00Z",
                "state": "paused",
            },
        ],
        messages=[
            {
                "session_key": "discord_42_ab",
                "role": "user",
                "content": "hi",
                "created_at": "2026-02-01T10:00:01+00:00",
            },
            {
                "session_key": "discord_42_ab",
                "role": "assistant",
                "content": "hello",
                "created_at": "2026-02-01T10:00:02+00:00",
            },
            {
                "session_key": "cli_orphan",
                "role": "user",
                "content": "a",
                "created_at": "2026-02-03T09:00:00Z",
            },
        ],
    )


STORES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "koda": ("koda", lambda tmp: koda_build(tmp / "koda.db")),
    "zeroclaw-jsonl": ("zeroclaw", lambda tmp: zeroclaw_files(tmp / "zeroclaw")),
    "zeroclaw-sqlite": ("zeroclaw", lambda tmp: zeroclaw_sqlite(tmp / "sessions.db")),
    "zeph": (
        "zeph",
        lambda tmp: zeph_store(
            tmp / "zeph.db",
            [
                zeph_row(),
                zeph_row(id="zeph-2", status="completed", turns=2, cost_cents=0.1),
                zeph_row(id="zeph-3", status="Done", channel="pager"),
            ],
        ),
    ),
    "appam": (
        "appam",
        lambda tmp: appam_store(
            tmp / "history.db",
            [appam_row(), appam_row(id="ended", ended_at="2026-03-01T13:00:00Z")],
        ),
    ),
}


# --- helpers -----------------------------------------------------------------------


@pytest.fixture
def token() -> str:
    return ApiKey.generate(name="follower")[1]


def follower(
    fmt: str,
    path: Path,
    url: str,
    token: str,
    state: Path | None = None,
    *,
    transport: Any = None,
    **options: Any,
) -> Follower:
    source = {"format": fmt, "path": str(path), "url": url}
    loaded, _ = State.load(state, source)
    transport = transport or RetryingTransport(
        ApiClient(url, token), Backoff(base=0.01, cap=0.05), attempts=20
    )
    return Follower(
        fmt=fmt,
        path=path,
        writer=RemoteWriter(transport, batch=options.pop("batch", 1000)),
        state=loaded,
        state_path=state,
        **options,
    )


def fleet_rows() -> dict[str, list[dict[str, Any]]]:
    """Sessions, messages (by session key) and rollups, without row ids."""
    keys = dict(Session.objects.values_list("id", "key"))
    return {
        "sessions": [
            {k: v for k, v in row.items() if k != "id"}
            for row in Session.objects.order_by("key").values()
        ],
        "messages": [
            {
                **{k: v for k, v in row.items() if k not in ("id", "session_id")},
                "key": keys[row["session_id"]],
            }
            for row in Message.objects.order_by("session__key", "seq").values()
        ],
        "rollups": [
            {k: v for k, v in row.items() if k != "id"}
            for row in DailyUsage.objects.order_by("day", "agent", "model", "channel").values()
        ],
    }


def wipe() -> None:
    Message.objects.all().delete()
    Session.objects.all().delete()
    DailyUsage.objects.all().delete()
    Tombstone.objects.all().delete()


# --- the remote writer is the local writer -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", sorted(STORES))
def test_the_remote_writer_gives_what_the_local_import_gives(
    store: str, tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    fmt, build = STORES[store]
    path = build(tmp_path)
    run_import(fmt, str(path), expect_errors=store in ("zeroclaw-jsonl",))
    local = fleet_rows()
    wipe()

    report = follower(fmt, path, live_server.url, token).sync()

    remote = fleet_rows()
    if fmt == "koda":
        # The API cannot carry koda's archive marks (remote.py): the one difference.
        assert report.dropped == 2
        assert [m["compacted_at"] is not None for m in local["messages"]].count(True) == 2
        for message in local["messages"]:
            message["compacted_at"] = None
    assert remote == local
    assert local["sessions"]
    assert report.sessions == len(local["sessions"])
