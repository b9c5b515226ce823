"""``/healthz`` for load balancers and ``/metrics`` for Prometheus.

Neither needs a dashboard log-in. ``/healthz`` tells whether this process can
serve (database reachable, migrations applied) and nothing else. ``/metrics``
is read from the database on every scrape (``fleet.metrics.FleetCollector``)
through a registry made for that request — no counters live in the process,
so every worker of a deployment answers the same numbers — and needs the
bearer token ``FLEET_METRICS_TOKEN`` (unset: the endpoint does not exist).
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from fleet.metrics import FleetCollector

logger = logging.getLogger(__name__)


# --- /healthz -------------------------------------------------------------------


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # Whatever the driver raises (refused, auth, missing file): not reachable.
        logger.warning("healthz: the database is not reachable", exc_info=True)
        return False
    return True


def _migrations_ok() -> bool:
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        logger.warning("healthz: cannot read the applied migrations", exc_info=True)
        return False
    if plan:
        logger.warning("healthz: %d migration(s) not applied", len(plan))
    return not plan


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ok", "database": "ok", "migrations": "ok"}``, else 503 naming the failure.

    Reports no detail (no error text, no counts): it is public.
    """
    checks = {"database": "ok", "migrations": "ok"}
    if not _database_ok():
        checks = {"database": "unreachable", "migrations": "unknown"}
    elif not _migrations_ok():
        checks["migrations"] = "pending"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503
    )


# --- /metrics -------------------------------------------------------------------


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text (or OpenMetrics when asked for in ``Accept``);
    ``Authorization: Bearer <FLEET_METRICS_TOKEN>``."""
    token = settings.FLEET_METRICS_TOKEN
    if not token:
        raise Http404("metrics are disabled")
    if not _authorized(request, token):
        response = HttpResponse("401 Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="fleet-metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(now=timezone.now()))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encoder(registry), content_type=content_type)
    response["Vary"] = "Accept, Authorization"
    return response
