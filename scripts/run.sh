#!/usr/bin/env bash
# Serve Fleet on the embedded SQLite database with a demo fleet loaded.
#
# First run: generates a secret key and an admin password into var/ (git-ignored),
# migrates, loads the demo fleet. Later runs reuse them (and keep your data).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p var
umask 077

if [ ! -s var/secret_key ]; then
    "$PY" -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key
fi
export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-$(cat var/secret_key)}
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

cat <<MSG

  Fleet is running at http://$HOST:$PORT/
  Log in as:  admin  /  $ADMIN_PASSWORD
  (the password is kept in var/admin_password; stop with Ctrl-C)

MSG
exec "$PY" manage.py runserver --noreload "$HOST:$PORT"
