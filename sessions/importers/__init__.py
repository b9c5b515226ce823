"""Importers: bring the history in the agents' own stores into Fleet.

``import_store(format, path)`` reads a store with that format's reader and
writes every session through ``sessions.services``; see ``base`` for the
rules every format shares (one transaction per session, corrupt rows
reported and skipped, idempotent re-imports, dry runs) and each format's
module for how its store is meant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sessions.importers import appam, fleet, koda, zeph, zeroclaw
from sessions.importers.base import (
    ImportReport,
    Problem,
    Reader,
    SessionOutcome,
    SinceReader,
    SourceError,
    run_import,
)

FORMATS: dict[str, Reader] = {
    "appam": appam.read,
    "fleet": fleet.read,
    "koda": koda.read,
    "zeph": zeph.read,
    "zeroclaw": zeroclaw.read,
}
# Formats whose reader can skip the sessions unchanged since a cursor (``fleet-follow``).
SINCE_READERS: dict[str, SinceReader] = {
    "appam": appam.read_since,
    "koda": koda.read_since,
    "zeroclaw": zeroclaw.read_since,
}


def import_store(
    fmt: str,
    path: str | Path,
    *,
    agent: str | None = None,
    dry_run: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    on_session: Callable[[SessionOutcome], None] | None = None,
    on_warning: Callable[[Problem], None] | None = None,
) -> ImportReport:
    """Import the store at ``path`` in format ``fmt`` (a key of ``FORMATS``).

    ``agent`` names the agent of every imported session (else each format's
    own rule). ``on_warning`` hears of values imported with a fallback (an
    unknown kind, status, channel or state). With ``dry_run`` every session is
    written and rolled back, so the report counts what an import would do and
    nothing changes. Raises
    ``SourceError`` when the store cannot be read at all.
    """
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; one of {', '.join(sorted(FORMATS))}")
    return run_import(
        fmt,
        FORMATS[fmt](Path(path)),
        path=str(path),
        agent=agent,
        dry_run=dry_run,
        on_problem=on_problem,
        on_session=on_session,
        on_warning=on_warning,
    )


__all__ = [
    "FORMATS",
    "ImportReport",
    "Problem",
    "SessionOutcome",
    "SourceError",
    "import_store",
]
