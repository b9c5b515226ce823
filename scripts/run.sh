#!/usr/bin/env bash
# Serve Fleet on the embedded SQLite database with a demo fleet loaded, and a
# simulated fleet of agents writing to it through the JSON API in the background.
#
# First run: generates a secret key, an admin password and the simulator's API
# key into var/ (git-ignored), migrates, loads the demo fleet. Later runs reuse
# them (and keep your data). FLEET_SIMULATE=0 leaves the simulator out;
# FLEET_SIMULATE_RATE sets its pace (turns per second, default 0.5).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p var
umask 077

if [ ! -s var/secret_key ]; then
    "$PY" -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key
fi
export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-$(cat var/secret_key)}
# The background simulator would otherwise log a line per request.
export FLEET_LOG_LEVEL=${FLEET_LOG_LEVEL:-WARNING}
export DJANGO_ALLOWED_HOSTS=${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,[::1]}
HOST=${FLEET_HOST:-127.0.0.1}
PORT=${FLEET_PORT:-8000}

"$PY" manage.py migrate --no-input -v0
"$PY" manage.py collectstatic --no-input -v0
"$PY" manage.py demo_fleet --if-empty

if [ ! -s var/admin_password ]; then
    "$PY" -c "import secrets; print(secrets.token_urlsafe(12))" > var/admin_password
fi
ADMIN_PASSWORD=$(cat var/admin_password)
DJANGO_SUPERUSER_PASSWORD=$ADMIN_PASSWORD "$PY" manage.py ensure_admin admin

SIMULATE=${FLEET_SIMULATE:-1}
SIM_PID=""
# The simulator stops with the server (Ctrl-C, kill) or whatever ends this script.
stop_simulator() {
    if [ -n "$SIM_PID" ]; then
        kill "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
}
trap stop_simulator EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ "$SIMULATE" != "0" ]; then
    # The simulator's own API key, made once and kept in var/simulator_key;
    # a new one when this database does not know it (e.g. after a reset).
    if [ ! -s var/simulator_key ] || ! FLEET_API_KEY=$(cat var/simulator_key) "$PY" manage.py \
        shell -v0 -c "import os, sys; from sessions.models import ApiKey; \
sys.exit(0 if ApiKey.authenticate(os.environ['FLEET_API_KEY']) else 1)"; then
        "$PY" manage.py create_api_key -v0 "simulator-$(date +%Y%m%d-%H%M%S)" > var/simulator_key
    fi
    case "$HOST" in
        0.0.0.0 | "::" | "[::]") SIM_HOST=127.0.0.1 ;;
        *) SIM_HOST=$HOST ;;
    esac
    # The key goes through the environment, not the command line (ps shows that).
    FLEET_API_KEY=$(cat var/simulator_key) "$PY" manage.py simulate_fleet \
        --url "http://$SIM_HOST:$PORT" --rate "${FLEET_SIMULATE_RATE:-0.5}" --agents 8 \
        --duration 0 --wait 60 > var/simulator.log 2>&1 &
    SIM_PID=$!
fi

cat <<MSG

  Fleet is running at http://$HOST:$PORT/
  Log in as:  admin  /  $ADMIN_PASSWORD
  (the password is kept in var/admin_password; stop with Ctrl-C)
MSG
if [ -n "$SIM_PID" ]; then
    cat <<MSG
  A simulated fleet of 8 agents reports to it through the JSON API
  (log: var/simulator.log; FLEET_SIMULATE=0 turns it off).
MSG
fi
echo
"$PY" manage.py runserver --noreload "$HOST:$PORT"
