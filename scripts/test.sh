#!/usr/bin/env bash
# The whole test suite: lint, then pytest on SQLite, then pytest on PostgreSQL.
#
# PostgreSQL: uses FLEET_TEST_DATABASE_URL when set; otherwise starts a
# throwaway cluster from the local PostgreSQL binaries (apt-get install
# postgresql) in var/pgtest and stops it afterwards. Without PostgreSQL the
# PostgreSQL pass is skipped with a visible reason -- except in CI (CI=true),
# where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

run_pytest() {
    local label=$1; shift
    echo "== pytest ($label)"
    set +e
    "$PY" -m pytest "$@"
    local rc=$?
    set -e
    if [ $rc -eq 5 ]; then
        echo "FAILED: no tests ran on $label" >&2
        exit 1
    fi
    if [ $rc -ne 0 ]; then
        echo "FAILED: pytest on $label exited $rc" >&2
        exit $rc
    fi
}

export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-test-only-secret-key-not-for-production}
mkdir -p var

# --- SQLite -------------------------------------------------------------------
(unset DATABASE_URL; export FLEET_TEST_SQLITE_PATH="${FLEET_TEST_SQLITE_PATH:-$PWD/var/test.sqlite3}"; run_pytest SQLite "$@")

# --- PostgreSQL ---------------------------------------------------------------
if [ -n "${FLEET_TEST_DATABASE_URL:-}" ]; then
    (export DATABASE_URL=$FLEET_TEST_DATABASE_URL; run_pytest PostgreSQL "$@")
    exit 0
fi

PG_BIN=""
for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && PG_BIN=$dir
done
if [ -z "$PG_BIN" ] && command -v initdb >/dev/null; then
    PG_BIN=$(dirname "$(command -v initdb)")
fi
if [ -z "$PG_BIN" ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "FAILED: PostgreSQL is not installed, and CI must test on it" >&2
        exit 1
    fi
    echo "SKIPPED: the PostgreSQL pass -- no PostgreSQL server binaries found" \
         "(apt-get install postgresql, or set FLEET_TEST_DATABASE_URL)" >&2
    exit 0
fi

PGDIR=$PWD/var/pgtest
PGPORT=${FLEET_TEST_PG_PORT:-54329}
AS=()
if [ "$(id -u)" = "0" ]; then
    # PostgreSQL refuses to run as root.
    AS=(runuser -u postgres --)
fi
rm -rf "$PGDIR"
mkdir -p "$PGDIR"
[ "$(id -u)" = "0" ] && chown postgres "$PGDIR"
"${AS[@]}" "$PG_BIN/initdb" -D "$PGDIR/data" -U fleet --auth=trust -E UTF8 >"$PGDIR/initdb.log"
stop_pg() { "${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; }
trap stop_pg EXIT
"${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses='' -c fsync=off -c max_connections=100" start >/dev/null
(export DATABASE_URL="postgres://fleet@/fleet?host=$PGDIR&port=$PGPORT"; run_pytest PostgreSQL "$@")
