"""Run test code in several forked processes at once (races with real concurrency).

On SQLite the test database is a real file (settings), so forked processes
share it; each child opens its own connections.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from typing import Any

from django.db import connections

TIMEOUT = 180


def _child(target: Callable[..., None], errors: Any, *args: Any) -> None:
    connections.close_all()
    code = 0
    try:
        target(*args)
    except BaseException:
        errors.put(traceback.format_exc())
        code = 1
    finally:
        connections.close_all()
        errors.close()
        errors.join_thread()
        # Skip the parent's atexit handlers (pytest's) in the forked child.
        os._exit(code)


def run_in_processes(*jobs: tuple[Callable[..., None], tuple[Any, ...]]) -> None:
    """Run each ``(target, args)`` in its own forked process at once; fail on any error."""
    connections.close_all()
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    processes = [
        context.Process(target=_child, args=(target, errors, *args)) for target, args in jobs
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(TIMEOUT)
    reports = []
    while not errors.empty():
        reports.append(errors.get())
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert not reports, "\n".join(reports)
    assert [p.exitcode for p in processes] == [0] * len(processes)
