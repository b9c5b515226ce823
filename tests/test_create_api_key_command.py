"""manage.py create_api_key NAME."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sessions.models import ApiKey
from tests.api_client import ApiClient

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_prints_a_working_key_once_and_stores_only_its_hash() -> None:
    out, err = run("coder-1")

    token = out.strip()
    key = ApiKey.objects.get(name="coder-1")
    assert token.startswith(key.prefix)
    assert key.hashed_key == ApiKey.hash_token(token)
    assert token not in err
    assert "shown once" in err.lower()
    assert ApiClient(token).get("sessions").status_code == 200


def test_a_duplicate_name_is_a_command_error_and_makes_no_key() -> None:
    run("coder-1")

    with pytest.raises(CommandError, match="already exists"):
        run("coder-1")
    assert ApiKey.objects.count() == 1


def test_a_blank_name_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="must not be empty"):
        run("   ")
    assert not ApiKey.objects.exists()


def test_quiet_mode_prints_only_the_key() -> None:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "ci", verbosity=0, stdout=out, stderr=err)

    assert err.getvalue() == ""
    assert out.getvalue().strip().startswith("fleet_")


def test_agent_and_read_only_flags_scope_the_key() -> None:
    out, err = run("watcher", "--agent", "bot-a", "--agent", "bot-b", "--read-only")

    key = ApiKey.objects.get(name="watcher")
    assert key.agents == ["bot-a", "bot-b"]
    assert key.read_only is True
    assert "bot-a, bot-b (read-only)" in err
    api = ApiClient(out.strip())
    assert api.get("sessions").status_code == 200
    assert api.put("sessions/s", {"agent": "bot-a"}).status_code == 403


def test_without_flags_the_key_has_full_access() -> None:
    _, err = run("coder-1")

    key = ApiKey.objects.get(name="coder-1")
    assert key.agents == []
    assert key.read_only is False
    assert "all agents" in err


def test_a_bad_agent_name_is_a_command_error_and_makes_no_key() -> None:
    with pytest.raises(CommandError, match="agents"):
        run("coder-1", "--agent", "x" * 300)
    assert ApiKey.objects.count() == 0
