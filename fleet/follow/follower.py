"""One sync pass of ``fleet-follow``, and the polling loop around it.

A pass (``Follower.sync``):

1. Stats the store's files (``state.store_stamp``). When nothing moved since
   the last read (of this process: a restart reads the store once), and the
   newest change is older than ``SETTLE`` seconds before that read began (a
   write in the same clock tick as the read would not move the stamp), the
   pass ends there: an idle store costs a few ``stat`` calls per interval.
2. Otherwise reads the store with the format's reader -- the same reader
   ``import_sessions`` uses -- into memory, so the SQLite read transaction
   (``mode=ro``: never a write lock) ends before anything is sent. koda,
   appam and zeroclaw's ``sessions.db`` are read since the cursor
   (``SINCE_READERS``: sessions whose stamp is the cursor's are
   ``Unchanged``; a koda session written to is read from the cursor's tail).
   A zeroclaw JSONL folder is read up to each file's last complete line, and
   only its files that changed when no file came or went.
3. For each session, the remote writer sends what the cursor says Fleet
   lacks (``remote.RemoteWriter``); the cursor is saved after each session
   (at most once a second) and at the end of the pass.
4. Sessions the cursor knows that the store no longer has are forgotten, and
   deleted in Fleet only with ``mirror_deletes`` -- and never after a read
   that reported an unreadable session (it may be one of them).

``stop`` (SIGTERM) ends a pass after the session under way: a long backlog
does not hold up a shutdown, and the next start resumes from the cursor.

A poll after a change therefore costs a read of what changed (zeph: of the
whole store), and sends only the changed sessions: the new messages, and a
PUT of the fields.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.follow.remote import RemoteOutcome, RemoteWriter, session_path
from fleet.follow.state import State, store_stamp
from sessions.importers import FORMATS, SINCE_READERS, SourceError
from sessions.importers import zeroclaw as zeroclaw_reader
from sessions.importers.base import Problem, Since, SourceSession, Unchanged

FOLLOWED = ("appam", "koda", "zeph", "zeroclaw")
SETTLE = 1.0  # seconds: a stamp this close to the last read is read again
SAVE_EVERY = 1.0  # seconds between cursor saves within a pass


def read_store(
    fmt: str,
    path: Path,
    only: Collection[str] | None = None,
    since: Mapping[str, Since] | None = None,
) -> Iterator[SourceSession | Problem | Unchanged]:
    """The store's records; ``only``: of these files of a zeroclaw folder;
    ``since``: the sessions' stamps, for a format that reads since them
    (``SINCE_READERS``: the sessions whose rows have them are ``Unchanged``)."""
    if fmt == "zeroclaw" and path.is_dir():
        return zeroclaw_reader.read_folder(path, complete_lines=True, only=only)
    if since is not None and fmt in SINCE_READERS:
        return SINCE_READERS[fmt](path, since)
    return FORMATS[fmt](path)


@dataclass
class SyncReport:
    read: bool = False
    records: int = 0  # sessions (and unreadable ones) read, not those skipped unchanged
    sessions: int = 0
    created: int = 0
    messages: int = 0
    skipped: int = 0
    dropped: int = 0
    errors: int = 0
    gone: int = 0
    deleted: int = 0
    lag: float | None = None
    seconds: float = 0.0
    failure: str = ""  # the store could not be read at all

    @property
    def busy(self) -> bool:
        return bool(self.sessions or self.errors or self.gone or self.failure)

    def line(self) -> str:
        if self.failure:
            return f"sync: cannot read the store: {self.failure}"
        if not self.read:
            return "sync: store unchanged, nothing sent"
        lag = "" if self.lag is None else f", lag {self.lag:.1f}s"
        parts = [
            f"sync: {self.sessions} session(s) sent ({self.created} new), "
            f"{self.messages} message(s) appended ({self.skipped} already stored)",
            f"{self.errors} error(s)",
        ]
        if self.gone:
            parts.append(f"{self.gone} gone from the store ({self.deleted} deleted in Fleet)")
        if self.dropped:
            parts.append(f"{self.dropped} mark(s) the API cannot carry")
        return ", ".join(parts) + f"{lag}, {self.seconds:.2f}s"


@dataclass
class Follower:
    fmt: str
    path: Path
    writer: RemoteWriter
    state: State
    state_path: Path | None  # None: never saved (a dry run)
    mirror_deletes: bool = False
    log: Callable[[str], None] = field(default=lambda line: None)
    clock: Callable[[], float] = time.time
    # Set (SIGTERM): the pass ends after the session under way, its cursor saved.
    stop: threading.Event = field(default_factory=threading.Event)
    _reported: set[str] = field(default_factory=set)
    _saved_at: float = 0.0
    _read_once: bool = False  # this process has read the whole store

    def _report(self, problem: Problem) -> None:
        text = str(problem)
        if text not in self._reported:
            self._reported.add(text)
            self.log(f"problem: {text}")

    def _save(self, *, force: bool = False) -> None:
        if self.state_path is None:
            return
        now = time.monotonic()
        if force or now - self._saved_at >= SAVE_EVERY:
            self.state.save(self.state_path)
            self._saved_at = now

    def _settled(self, entry: list[Any]) -> bool:
        """The file's last change came well before the last read began."""
        read_at = self.state.read_at
        return read_at is not None and entry[2] / 1e9 < read_at - SETTLE

    def _unchanged(self, stamp: list[list[Any]]) -> bool:
        if stamp != self.state.stamp or not self._read_once:
            return False  # changed, or the first pass of this process
        return all(self._settled(entry) for entry in stamp)

    def _changed_files(self, stamp: list[list[Any]]) -> set[str] | None:
        """A zeroclaw folder's files to read again, or ``None``: read the whole store.

        Only when the same files are there as at the last read (none added or
        removed: no session came or went) and this process read them all once.
        """
        if not self._read_once or not self.path.is_dir() or self.state.stamp is None:
            return None
        before = {entry[0]: entry for entry in self.state.stamp}
        if set(before) != {entry[0] for entry in stamp}:
            return None
        return {
            entry[0] for entry in stamp if entry != before[entry[0]] or not self._settled(entry)
        }

    def sync(self) -> SyncReport:
        """One pass (see the module docstring)."""
        started = self.clock()
        tick = time.monotonic()
        report = SyncReport()
        stamp = store_stamp(self.path)
        if self._unchanged(stamp):
            return report
        only = self._changed_files(stamp)
        since = {
            key: cursor
            for key, sent in self.state.sessions.items()
            if (cursor := sent.since()) is not None
        }
        try:
            records = list(read_store(self.fmt, self.path, only, since))
        except SourceError as exc:
            report.failure = str(exc)
            return report
        report.read = True
        report.records = sum(not isinstance(record, Unchanged) for record in records)
        seen: set[str] = set()
        unreadable = False
        for record in records:
            if self.stop.is_set():
                self._save(force=True)
                report.seconds = time.monotonic() - tick
                return report
            if isinstance(record, Problem):
                unreadable = True
                report.errors += 1
                self._report(record)
                continue
            seen.add(record.key)
            if isinstance(record, Unchanged):
                continue  # its rows still have the stamp Fleet acknowledged
            for problem in [*record.problems, *record.warnings]:
                self._report(problem)
            report.errors += len(record.problems)
            outcome = self.writer.write(record, self.state.sessions.get(record.key))
            # The stamp only once Fleet holds this version: a refused or failed
            # session is read again at the next change (or restart).
            sent = outcome.sent
            held = outcome.result != "error" and not sent.refused
            sent.stamp, sent.tail = (record.stamp, record.tail) if held else ("", None)
            self.state.sessions[record.key] = sent
            self._count(report, record, outcome)
            self._save()
        # A partial read (``only``) saw the same files as before: nothing is gone.
        gone = [key for key in self.state.sessions if key not in seen] if only is None else []
        if gone and not unreadable:
            report.gone = len(gone)
            for key in gone:
                if self.mirror_deletes:
                    status, _ = self.writer.transport.call("DELETE", session_path(key))
                    if status not in (204, 404, 410):
                        self.log(f"problem: deleting {key!r} in Fleet answered HTTP {status}")
                        continue
                    report.deleted += 1
                del self.state.sessions[key]
        self.state.stamp = stamp
        self.state.read_at = started
        self._read_once = True
        self._save(force=True)
        report.seconds = time.monotonic() - tick
        return report

    def _count(self, report: SyncReport, record: SourceSession, outcome: RemoteOutcome) -> None:
        if outcome.problem is not None:
            report.errors += 1
            self._report(outcome.problem)
        if outcome.result in ("created", "updated"):
            report.sessions += 1
            report.created += outcome.result == "created"
            lag = self.clock() - record.last_active_at.timestamp()
            report.lag = lag if report.lag is None else max(report.lag, lag)
        report.messages += outcome.appended
        report.skipped += outcome.skipped
        report.dropped += outcome.dropped
