from __future__ import annotations

import os

import pytest
from django.db import connection

from tests.clock import Clock


def pytest_configure(config: pytest.Config) -> None:
    # No collectstatic runs in tests: swap WhiteNoise's manifest storage.
    from django.conf import settings

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # A slow hasher is the point in production and only a cost here: hashing the
    # password of every user a fixture creates (and of every log-in) with PBKDF2
    # took ~40 s of each pass. Production settings keep Django's list; servers the
    # tests spawn never check these passwords (they log in with force_login cookies).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"fleet database: {engine} (CI={os.environ.get('CI', '')})"


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL behaviour: runs in the PostgreSQL pass of `make test`")


@pytest.fixture
def sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite behaviour: runs in the SQLite pass of `make test`")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "pw-admin-123")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """``timezone.now`` stands still (early in a minute) until the test advances it."""
    from django.utils import timezone

    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock)
    return clock


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """The API's bad-key counts live in the (per-process) cache: no test inherits them."""
    from django.core.cache import cache

    cache.clear()
