"""bench/pages.py's measurement: what it counts as a page's queries."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from django.test import Client

from sessions import services
from sessions.models import ApiKey
from tests.api_client import make_key

_PATH = Path(__file__).resolve().parent.parent / "bench" / "pages.py"
_SPEC = importlib.util.spec_from_file_location("bench_pages", _PATH)
assert _SPEC
assert _SPEC.loader
pages = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pages)

pytestmark = pytest.mark.django_db


def test_a_keys_use_recorded_during_a_request_is_not_counted_as_the_pages_query(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 16: `API fleet` showed 6 queries at 1 M sessions and 5 at 1 001:
    # the key's last use (a write at most once a minute) fell inside one of
    # the slow run's requests. Here it falls inside every one of them.
    for index in range(3):
        services.session_upsert(key=f"s{index}")
    monkeypatch.setattr(ApiKey, "LAST_USED_RESOLUTION", 0)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {make_key()}"}

    figures = pages.measure(client, "/api/v1/fleet", 3, headers, None)

    # The key, the session counts, the daily, minute and latency rollups.
    assert figures["queries"] == 5
    assert figures["key_uses"] == 3
