"""The follower's cursor: a JSON state file, written atomically.

It holds, per session key, what Fleet has acknowledged (``remote.Sent``: the
fingerprint of the session's fields and totals, how many of the store's
messages in order and the id of the last), and the store's stamp at the last
read (``store_stamp``). A write goes to a temporary file in the same folder,
is flushed to disk and renamed over the old one (``os.replace``): a kill at
any moment leaves the old cursor or the new, never half of one. The cursor
may lag what Fleet holds (a kill between an answer and the save); the resend
that follows is skipped by ``message_id``.

The state names the store and server it follows; a state written for
another format, path or URL is not used (a new cursor starts, which resends
everything once, harmlessly).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.follow.remote import Sent

VERSION = 1


def default_state_path(fmt: str, path: Path, url: str) -> Path:
    """``$XDG_STATE_HOME/fleet-follow/<format>-<hash>.json`` (``~/.local/state`` by default)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(f"{fmt}\n{path.resolve()}\n{url}".encode()).hexdigest()[:16]
    return base / "fleet-follow" / f"{fmt}-{digest}.json"


def store_stamp(path: Path) -> list[list[Any]]:
    """Sizes and modification times of the files a store is: a poll whose stamp
    has not moved need not read the store (``Follower.sync``).

    A SQLite store is its file and its ``-wal`` (in WAL mode a commit changes
    only the log); a zeroclaw folder is its ``*.jsonl`` files.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".jsonl")
    else:
        files = [path, path.with_name(path.name + "-wal")]
    stamp = []
    for file in files:
        try:
            status = file.stat()
        except OSError:
            continue
        stamp.append([file.name, status.st_size, status.st_mtime_ns])
    return stamp


@dataclass
class State:
    source: dict[str, str]
    sessions: dict[str, Sent] = field(default_factory=dict)
    stamp: list[list[Any]] | None = None
    read_at: float | None = None  # when the last full read started (Unix time)

    @classmethod
    def load(cls, path: Path | None, source: dict[str, str]) -> tuple[State, str]:
        """The state at ``path`` for ``source``; a fresh one (and why) when there is none."""
        if path is None or not path.exists():
            return cls(source), ""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != VERSION:
                return cls(source), f"{path} is of another version; starting a new cursor"
            if data.get("source") != source:
                return cls(source), (
                    f"{path} follows {data.get('source')}, not {source}; starting a new cursor"
                )
            sessions = {key: Sent.from_json(entry) for key, entry in data["sessions"].items()}
            return cls(source, sessions, data.get("stamp"), data.get("read_at")), ""
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            return cls(source), f"cannot read {path} ({exc}); starting a new cursor"

    def as_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "source": self.source,
            "stamp": self.stamp,
            "read_at": self.read_at,
            "sessions": {key: sent.as_json() for key, sent in self.sessions.items()},
        }

    def save(self, path: Path) -> None:
        """Write atomically: a temporary file in the same folder, fsync, rename."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, then renamed)
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
        )
        try:
            with handle:
                json.dump(self.as_json(), handle, ensure_ascii=False, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(handle.name)
            raise
