"""``sessions.ops.progress``: a bar on a terminal, nothing elsewhere."""

from __future__ import annotations

import io

from sessions.ops.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_it_draws_and_erases_a_bar_on_a_terminal() -> None:
    out = Terminal()
    bar = Progress(out, "sessions")

    bar.update(5, 10)
    bar.update(10, 10)
    drawn = out.getvalue()
    bar.close()

    assert "sessions [###############...............]  50% 5/10" in drawn
    assert "100% 10/10" in drawn
    assert out.getvalue().endswith("\r")
    assert "\n" not in out.getvalue()


def test_it_writes_nothing_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress(out, "sessions")

    bar.update(5, 10)
    bar.close()

    assert out.getvalue() == ""


def test_a_command_on_a_terminal_shows_progress_but_json_does_not(db) -> None:
    from django.core.management import call_command

    from tests.ops_support import ago, make_session

    for index in range(3):
        make_session(f"s{index}", at=ago(hours=2), count=0)
    out = Terminal()
    call_command("reconcile", "--batch-size", "1", stdout=out)
    assert "stale [" in out.getvalue()
    assert out.getvalue().rstrip().endswith("(running for 15m).")

    make_session("t", at=ago(hours=2), count=0)
    out = Terminal()
    call_command("reconcile", "--json", stdout=out)
    assert "[" not in out.getvalue()
