"""The JSON API: one NinjaAPI, bearer-key auth, and one error shape for every refusal.

Every error is ``{"error": {"code", "message", "field"?}}``: domain errors
(``sessions.errors.FleetError``) map their code onto a status, and the
library's own refusals (unparsable body, bad query parameter, no key) are
translated into the same shape. Anything unexpected is logged and answered
in that shape too; the tests and the fuzzer make sure no input reaches it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer

from fleet.api import throttle
from sessions.errors import FleetError
from sessions.models import ApiKey

logger = logging.getLogger(__name__)

STATUS_BY_CODE = {
    "invalid": 422,
    "forbidden": 403,
    "not_found": 404,
    "gone": 410,
    "conflict": 409,
}
CODE_BY_STATUS = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    422: "invalid",
    429: "throttled",
}

DESCRIPTION = """
The JSON API agents report to. Every call needs `Authorization: Bearer <key>`
(keys come from the admin or `manage.py create_api_key NAME`, and are shown
once). Bodies are JSON objects; money is a decimal string in responses and a
number or a string in requests; timestamps are RFC 3339.

**Errors** have one shape, `{"error": {"code": ..., "message": ..., "field": ...}}`
(`field` when one value is to blame, e.g. `messages[3].role`): 400 malformed
JSON, 401 no/bad/revoked key, 403 outside the key's scope, 404 unknown session,
409 conflict, 410 deleted session, 413 body too large, 422 invalid value,
429 too many wrong keys from this address (every request from it waits
`Retry-After` seconds, valid key or not). A refused request writes nothing.

**Scoped keys** may be limited to agents: they read and write only those
agents' sessions (another agent's session answers 403; lists, search and
`/fleet` leave them out; a new session without an `agent` gets the key's
agent when it has exactly one) and/or read-only (every write answers 403).

**Tokens** follow the OpenTelemetry GenAI convention: `prompt_tokens` is all
input including cache reads and writes, `completion_tokens` all output
including reasoning. Forward your provider's usage object unchanged (OpenAI
Chat Completions or Responses, Anthropic Messages, Gemini `usageMetadata`,
koda): the server normalises it by its shape. Bare `input_tokens`, which
Anthropic and OpenAI count differently, needs `"convention": "anthropic"`
(input without cache tokens) or `"otel"`.

**Session keys** may contain `/` (e.g. `discord/clamps/123`). Because of the
routes below a key, a key that is `running` or `stuck`, or that ends in
`/messages`, `/messages/last`, `/pending-tool-calls`, `/compact` or `/usage`,
cannot be addressed through this API.

**Resuming an agent** reads: `GET /sessions/{key}/messages/last?role=user`
(the last message of a role; 404 when none), `GET /sessions/{key}/pending-tool-calls`
(calls a crash left without a result), `GET /messages/recent?role=user&agent=`
(across sessions, newest first), `GET /sessions?agent=NAME&count=true&limit=1`
(a count), `GET /compaction-stats`. A deleted key comes back only through
`PUT /sessions/{key}` with `"recreate": true`.
"""


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer <key>`` against the stored hashes; never a login session.

    An address that sent too many wrong keys is refused first (fleet/api/throttle.py).
    """

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        throttle.check(request)
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = ApiKey.authenticate(token.strip())
        if key is None:
            throttle.record_bad_key(request)
        return key


class BodyError(Exception):
    """A body that is JSON but not an object (the parser's refusals keep their message)."""


class JsonObjectParser(Parser):
    """Bodies are JSON objects, whatever the Content-Type says (``curl -d`` sends form)."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        try:
            data = json.loads(request.body, parse_constant=_refuse_constant)
        except UnicodeDecodeError:
            raise BodyError("the body is not UTF-8 encoded JSON") from None
        except ValueError as exc:
            raise BodyError(f"the body is not valid JSON: {exc}"[:300]) from None
        if not isinstance(data, dict):
            raise BodyError(f"the body must be a JSON object, got {type(data).__name__}")
        return data


def _refuse_constant(name: str) -> None:
    # Python's json reads NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    raise ValueError(f"{name} is not a JSON value")


def error_response(
    status: int, message: str, *, code: str | None = None, field: str | None = None
) -> HttpResponse:
    error: dict[str, str] = {
        "code": code or CODE_BY_STATUS.get(status, "error"),
        "message": message,
    }
    if field:
        error["field"] = field
    return HttpResponse(
        json.dumps({"error": error}), status=status, content_type="application/json"
    )


def field_path(location: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "payload", "messages", 3, "role")`` → ``messages[3].role``."""
    parts = list(location)
    if parts and parts[0] == "body":
        parts = parts[2:]  # the source and the view's parameter name
    elif parts:
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path[:200]


api = NinjaAPI(
    title="Fleet API",
    version="1",
    description=DESCRIPTION,
    auth=ApiKeyAuth(),
    parser=JsonObjectParser(),
    # The bundled Swagger UI (ninja is an installed app); no validator badge
    # fetched from swagger.io either.
    docs=Swagger(settings={"validatorUrl": None, "persistAuthorization": False}),
    urls_namespace="fleet-api",
)


@api.exception_handler(FleetError)
def _fleet_error(request: HttpRequest, exc: FleetError) -> HttpResponse:
    status = STATUS_BY_CODE.get(exc.code, 422)
    return error_response(status, exc.message, code=exc.code, field=exc.field)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    location = first.get("loc", ())
    field = field_path(location)
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        message = "is required" if field else "the body is required: a JSON object"
    elif first.get("type") == "extra_forbidden":
        message = "is not a field of this request"
    elif first.get("type") == "model_attributes_type" and not field:
        message = "the body must be a JSON object"
    return error_response(422, message, field=field or None)


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    if request.headers.get("Authorization"):
        message = "the API key is not valid or was revoked"
    else:
        message = "send an API key: Authorization: Bearer <key>"
    response = error_response(401, message)
    response["WWW-Authenticate"] = 'Bearer realm="fleet"'
    return response


@api.exception_handler(Throttled)
def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    response = error_response(
        429, f"too many wrong API keys from this address; retry in {exc.wait} seconds"
    )
    response["Retry-After"] = str(exc.wait)
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    cause = exc.__cause__
    if isinstance(cause, RequestDataTooBig):
        return too_large()
    if isinstance(cause, BodyError):
        return error_response(400, str(cause))
    if isinstance(cause, RecursionError):
        return error_response(400, "the body is nested too deeply")
    return error_response(exc.status_code, exc.message)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404, "no such API resource")


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return too_large()


@api.exception_handler(RecursionError)
def _too_deep(request: HttpRequest, exc: RecursionError) -> HttpResponse:
    # json reads and writes nested values recursively: a pathologically deep
    # body is refused wherever it first overflows (a write rolls back).
    return error_response(400, "the body is nested too deeply")


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def _database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Unreachable, restarting, or locked past the busy timeout: the write (if
    # any) rolled back; the client retries. Django reconnects on the next request.
    logger.warning("API: database unavailable on %s %s: %s", request.method, request.path, exc)
    response = error_response(503, "database unavailable", code="unavailable")
    response["Retry-After"] = "5"
    return response


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API error on %s %s", request.method, request.path)
    return error_response(500, "internal error; it has been logged", code="server_error")


def too_large() -> HttpResponse:
    from django.conf import settings

    return error_response(
        413, f"the body is larger than the limit of {settings.FLEET_API_MAX_BODY_BYTES} bytes"
    )


# Routes register on import; the order matters: a key may contain "/", so the
# routes below a key come before the bare /sessions/{key} catch-all.
from fleet.api import budgets as budget_routes  # noqa: E402
from fleet.api import messages as message_routes  # noqa: E402
from fleet.api import overview as overview_routes  # noqa: E402
from fleet.api import sessions as session_routes  # noqa: E402

api.add_router("", message_routes.router, tags=["messages"])
api.add_router("", session_routes.router, tags=["sessions"])
api.add_router("", overview_routes.router, tags=["fleet"])
api.add_router("", budget_routes.router, tags=["budgets"])
