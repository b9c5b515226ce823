"""A JSON client for the API tests: bearer key, JSON bodies, literal URLs."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.test import Client

from sessions.models import ApiKey, Message, Session, Tombstone

BASE = "/api/v1"


class ApiClient:
    def __init__(self, token: str | None, client: Client | None = None) -> None:
        self.token = token
        self.client = client or Client()

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> HttpResponse:
        data: bytes | str = b""
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body)
        url = path if path.startswith("/") else f"{BASE}/{path}"
        if query:
            from urllib.parse import urlencode

            url += "?" + urlencode(query)
        return self.client.generic(
            method, url, data=data, content_type=content_type, headers=self.headers(headers)
        )

    def get(self, path: str, **query: Any) -> HttpResponse:
        return self.call("GET", path, query=query or None)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> HttpResponse:
        return self.call("PUT", path, body, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> HttpResponse:
        return self.call("POST", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.call("DELETE", path, **kwargs)


def make_key(name: str = "agent-key") -> str:
    return ApiKey.generate(name=name)[1]


def assert_error(
    response: HttpResponse, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The response is the API's error shape with this status, code and (if given) field."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    if field is not None:
        assert error.get("field") == field, error
    return error


def store_counts() -> tuple[int, int, int]:
    """Rows that writes create: a refused request must leave these unchanged."""
    return Session.objects.count(), Message.objects.count(), Tombstone.objects.count()
