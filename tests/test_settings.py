from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.db import connection
from django.test import override_settings

# Settings read in subprocesses: no database engine involved (runs in the SQLite pass).
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent


def _load_settings(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Import fleet.settings in a fresh interpreter with exactly ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FLEET_"))}
    clean.pop("DATABASE_URL", None)
    clean.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import fleet.settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'])",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = _load_settings({})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_debug_is_off_unless_asked_for():
    result = _load_settings({"DJANGO_SECRET_KEY": "x" * 50})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"


def test_it_names_a_bad_boolean_variable():
    result = _load_settings({"DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG" in result.stderr


def test_it_names_a_bad_database_url():
    result = _load_settings({"DJANGO_SECRET_KEY": "x" * 50, "DATABASE_URL": "mysql://u@h/db"})
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_it_reads_postgresql_from_database_url():
    result = _load_settings(
        {"DJANGO_SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://u:p@localhost:5432/fleet"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "django.db.backends.postgresql"


def test_it_names_a_bad_integer_variable():
    result = _load_settings({"DJANGO_SECRET_KEY": "x" * 50, "FLEET_STALE_AFTER": "soon"})
    assert result.returncode != 0
    assert "FLEET_STALE_AFTER" in result.stderr


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_immediate_transactions(sqlite_only):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 1000
    assert settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@override_settings(FLEET_STUCK_AFTER=3600, FLEET_STALE_AFTER=60)
def test_a_stuck_threshold_longer_than_the_stale_one_is_a_warning():
    ids = [message.id for message in run_checks()]
    assert "fleet.W001" in ids


def test_the_default_thresholds_pass_the_checks():
    assert [m.id for m in run_checks() if m.id.startswith("fleet.")] == []


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    """``manage.py check`` in a fresh interpreter with exactly ``env`` (no database needed)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FLEET_"))}
    clean.pop("DATABASE_URL", None)
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )


def test_more_threads_than_pooled_connections_is_a_warning():
    pooled = {
        "DJANGO_SECRET_KEY": "x" * 50,
        "DATABASE_URL": "postgres://u:p@localhost:5432/fleet",
        "FLEET_DB_POOL": "1",
        "FLEET_DB_POOL_MAX_SIZE": "4",
    }
    done = _check({**pooled, "FLEET_THREADS": "8"})
    assert "fleet.W003" in done.stdout + done.stderr
    assert "FLEET_DB_POOL_MAX_SIZE" in done.stdout + done.stderr
    done = _check({**pooled, "FLEET_THREADS": "4"})
    assert done.returncode == 0, done.stderr
    assert "fleet.W003" not in done.stdout + done.stderr


def test_login_throttling_is_tuned_from_the_environment():
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FLEET_"))},
        "DJANGO_SECRET_KEY": "x" * 50,
        "FLEET_LOGIN_FAILURE_LIMIT": "3",
        "FLEET_LOGIN_COOLOFF_MINUTES": "45",
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fleet.settings as s; print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, "
            "s.AXES_LOCKOUT_PARAMETERS)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3 0:45:00 [['username', 'ip_address']]"


def test_email_starttls_and_ssl_together_are_refused():
    result = _load_settings(
        {"DJANGO_SECRET_KEY": "x" * 50, "FLEET_EMAIL_STARTTLS": "1", "FLEET_EMAIL_SSL": "1"}
    )
    assert result.returncode != 0
    assert "FLEET_EMAIL_STARTTLS" in result.stderr
