"""gunicorn settings for Fleet: ``gunicorn --config gunicorn.conf.py fleet.wsgi``.

``scripts/serve.sh`` (``make serve``) runs exactly that after migrating and
collecting static files. Read from the environment:

- ``FLEET_BIND`` (default ``127.0.0.1:8000``): address, or ``unix:/run/fleet.sock``.
- ``FLEET_WORKERS``, else ``WEB_CONCURRENCY`` (default 2 × cores + 1, at most 8):
  worker processes. Each serves one request at a time and, on PostgreSQL,
  holds its own connection (or its own pool, ``FLEET_DB_POOL``).
- ``FLEET_WORKER_CLASS`` (default ``sync``; ``gthread`` when ``FLEET_THREADS``
  is above 1) and ``FLEET_THREADS`` (default 1; sync workers refuse more):
  ``gthread`` serves ``FLEET_THREADS`` requests at once per worker and keeps
  client connections alive between requests (sync workers close each one).
  Each thread holds its own database connection: on PostgreSQL keep
  ``FLEET_DB_POOL_MAX_SIZE`` at least ``FLEET_THREADS``.
- ``FLEET_WORKER_TIMEOUT`` (default 60): seconds a request may take before
  its worker is killed and replaced (a 1 000-message append takes well under 1 s).
- ``FLEET_ACCESS_LOG=1``: gunicorn's access log on stdout. Off by default:
  the app logs one structured line per API request itself (``fleet.log``).
- ``FLEET_LOG_LEVEL`` (default ``info``), ``FLEET_LOG_FORMAT`` (``json``/``text``).

Sync workers expect a reverse proxy (nginx, a load balancer) in front that
buffers slow clients; see the README's "Production".
"""

from __future__ import annotations

import os


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, got {value}")
    return value


def _workers() -> int:
    for name in ("FLEET_WORKERS", "WEB_CONCURRENCY"):
        if os.environ.get(name, "").strip():
            return _int(name, 1)
    return min(2 * (os.cpu_count() or 1) + 1, 8)


wsgi_app = "fleet.wsgi:application"
bind = [address.strip() for address in os.environ.get("FLEET_BIND", "127.0.0.1:8000").split(",")]
workers = _workers()
_WORKER_CLASSES = ("sync", "gthread")
threads = _int("FLEET_THREADS", 1)
# gunicorn itself turns sync workers with threads into gthread ones: say so.
worker_class = os.environ.get("FLEET_WORKER_CLASS", "").strip() or (
    "gthread" if threads > 1 else "sync"
)
if worker_class not in _WORKER_CLASSES:
    raise SystemExit(
        f"FLEET_WORKER_CLASS must be one of {', '.join(_WORKER_CLASSES)}, got {worker_class!r}"
    )
if worker_class == "sync" and threads > 1:
    raise SystemExit(
        "FLEET_WORKER_CLASS=sync serves one request at a time: "
        f"unset FLEET_THREADS (it is {threads}) or use FLEET_WORKER_CLASS=gthread"
    )
timeout = _int("FLEET_WORKER_TIMEOUT", 60)
graceful_timeout = 30
# Recycle workers now and then (jittered, so they do not all restart at once).
max_requests = 5000
max_requests_jitter = 500
# No preload: each worker imports the app after the fork, so no database
# connection (nor connection pool) can ever be shared between processes, and
# `kill -HUP` reloads new code. A broken configuration still stops start-up:
# the first worker fails to boot and gunicorn exits with its error.
preload_app = False

loglevel = os.environ.get("FLEET_LOG_LEVEL", "info").lower()
errorlog = "-"
access_log_on = os.environ.get("FLEET_ACCESS_LOG", "").lower() in ("1", "true", "yes", "on")
accesslog = "-" if access_log_on else None
if os.environ.get("FLEET_LOG_FORMAT", "json") == "json":
    # gunicorn's own lines (start, workers, timeouts) as JSON too, on stderr.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {
            "gunicorn.error": {
                "level": loglevel.upper(),
                "handlers": ["stderr"],
                "propagate": False,
            },
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["stdout" if access_log_on else "null"],
                "propagate": False,
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
            "null": {"class": "logging.NullHandler"},
        },
        "formatters": {"json": {"()": "fleet.log.JsonFormatter"}},
    }
