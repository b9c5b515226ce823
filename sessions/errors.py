"""The domain's error types. Every refused write raises one and writes nothing."""

from __future__ import annotations

from datetime import datetime


class FleetError(Exception):
    """Base of all domain errors: a code, a message and, when one field is to blame, its path.

    ``code`` maps one to one onto the JSON API's error codes and HTTP statuses.
    """

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, str]:
        data = {"code": self.code, "message": self.message}
        if self.field:
            data["field"] = self.field
        return data


class InvalidInput(FleetError):
    """A value the domain does not accept (HTTP 422)."""

    code = "invalid"


class SessionNotFound(FleetError):
    code = "not_found"


class SessionGone(FleetError):
    """The key belongs to a deleted session (a tombstone); writes are refused (HTTP 410).

    ``deleted_at``: when, if the raiser read the tombstone.
    """

    code = "gone"

    def __init__(
        self, message: str, *, field: str | None = None, deleted_at: datetime | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.deleted_at = deleted_at


class Conflict(FleetError):
    """The operation does not apply to the session as it is (HTTP 409)."""

    code = "conflict"


class Forbidden(FleetError):
    """The API key's scope does not allow this (HTTP 403); nothing is written."""

    code = "forbidden"
