"""The documented production environment passes ``manage.py check --deploy``;
a misconfigured one stops start-up with a message naming the variable."""

from __future__ import annotations

import sys

import pytest

from tests.server_support import SERVE, database_env, manage, production_env, run_in_checkout

# Settings checks in subprocesses: no database engine involved (runs in the SQLite pass).
pytestmark = pytest.mark.once

# README "Production": the environment an operator sets behind a TLS proxy.
DOCUMENTED = {
    "DJANGO_ALLOWED_HOSTS": "fleet.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://fleet.example.com",
    "FLEET_HTTPS": "1",
    "FLEET_BEHIND_TLS_PROXY": "1",
    "FLEET_PROXY_COUNT": "1",
}


def settings_value(env: dict[str, str], expression: str) -> str:
    done = run_in_checkout(
        [sys.executable, "-c", f"import fleet.settings as s; print({expression})"], env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_documented_production_environment_passes_check_deploy() -> None:
    env = production_env(**database_env(), **DOCUMENTED)

    done = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
    assert "WARNINGS" not in done.stderr


def test_behind_a_proxy_without_the_client_address_check_deploy_warns() -> None:
    env = production_env(**database_env(), **{**DOCUMENTED, "FLEET_PROXY_COUNT": "0"})

    done = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert done.returncode != 0
    assert "fleet.W002" in done.stderr
    assert "FLEET_PROXY_COUNT" in done.stderr


def test_without_https_settings_check_deploy_warns() -> None:
    env = production_env(**{**DOCUMENTED, "FLEET_HTTPS": "0"})

    done = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert done.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in done.stderr


def test_https_turns_on_secure_cookies_hsts_and_the_redirect() -> None:
    expression = (
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER"
    )
    assert settings_value(production_env(**DOCUMENTED), expression) == (
        "True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https')"
    )
    # `make run` on http://127.0.0.1: none of it (and no trust in a proxy header).
    plain = production_env()
    assert settings_value(plain, expression.replace("s.SECURE_PROXY_SSL_HEADER", "0")) == (
        "False False False 0 0"
    )
    assert settings_value(plain, "getattr(s, 'SECURE_PROXY_SSL_HEADER', None)") == "None"


def test_the_postgresql_pool_replaces_persistent_connections() -> None:
    env = production_env(DATABASE_URL="postgres://u:p@db.internal:5432/fleet", FLEET_DB_POOL="1")
    value = settings_value(
        env, "s.DATABASES['default']['CONN_MAX_AGE'], s.DATABASES['default']['OPTIONS']['pool']"
    )
    assert value == "0 {'min_size': 1, 'max_size': 4, 'timeout': 5, 'reconnect_timeout': 10}"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY"),
        ({"DATABASE_URL": "mysql://fleet@db/fleet"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://fleet@db:notaport/fleet"}, "DATABASE_URL"),
        ({"FLEET_DB_POOL": "1"}, "FLEET_DB_POOL"),  # on SQLite
        ({"FLEET_HTTPS": "maybe"}, "FLEET_HTTPS"),
    ],
    ids=["no-secret-key", "not-postgres", "bad-port", "pool-on-sqlite", "bad-boolean"],
)
def test_a_misconfigured_environment_stops_serve_naming_the_variable(
    env: dict[str, str], variable: str, tmp_path
) -> None:
    started = production_env(FLEET_SQLITE_PATH=str(tmp_path / "db.sqlite3"), **env)
    if not started["DJANGO_SECRET_KEY"]:
        del started["DJANGO_SECRET_KEY"]  # unset, with DJANGO_DEBUG unset too

    done = run_in_checkout(
        [str(SERVE)],
        {**started, "FLEET_PYTHON": sys.executable, "FLEET_BIND": "127.0.0.1:1"},
        timeout=60,
    )

    assert done.returncode != 0
    assert variable in done.stderr.splitlines()[-1]  # the last line says why
    assert "Listening at" not in done.stderr + done.stdout
    assert not (tmp_path / "db.sqlite3").exists()  # stopped before touching the database


def test_gunicorn_alone_stops_when_the_configuration_is_broken(tmp_path) -> None:
    env = production_env(FLEET_SQLITE_PATH=str(tmp_path / "db.sqlite3"), FLEET_WORKERS="1")
    del env["DJANGO_SECRET_KEY"]

    done = run_in_checkout(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", "127.0.0.1:0"],
        env,
        timeout=60,
    )

    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in done.stderr
