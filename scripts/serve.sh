#!/usr/bin/env bash
# Serve Fleet in production: check the configuration, migrate, collect static
# files, then replace this shell with gunicorn (gunicorn.conf.py).
#
# Configuration comes from the environment (README: "Configuration" and
# "Production"); nothing is generated here, unlike `make run`. Also read:
#   FLEET_SERVE_MIGRATE=0         skip `migrate` (run it once per release instead,
#                                 when several app servers share one database)
#   FLEET_SERVE_COLLECTSTATIC=0   skip `collectstatic` (static files built at deploy)
#   FLEET_PYTHON                  the Python to use (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${FLEET_PYTHON:-.venv/bin/python}

# A broken configuration (no secret key, a bad DATABASE_URL, ...) stops here,
# with a message that names the variable. This needs no database.
"$PY" manage.py check --fail-level ERROR >/dev/null

if [ "${FLEET_SERVE_MIGRATE:-1}" != "0" ]; then
    # An unreachable database does not stop the server: /healthz answers 503
    # (and the load balancer keeps traffic away) until it can serve.
    if ! "$PY" manage.py migrate --no-input -v1; then
        echo "serve: migrate failed (is the database reachable?); starting anyway:" \
             "/healthz answers 503 until the database is reachable and migrated" >&2
    fi
fi
if [ "${FLEET_SERVE_COLLECTSTATIC:-1}" != "0" ]; then
    "$PY" manage.py collectstatic --no-input -v0
fi
exec "$PY" -m gunicorn --config gunicorn.conf.py
