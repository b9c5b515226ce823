#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster, stopped and removed afterwards.
#
#   scripts/pg-throwaway.sh COMMAND [ARG...]   runs COMMAND with DATABASE_URL set
#                                              to the cluster's database "fleet";
#                                              exits with COMMAND's status
#   scripts/pg-throwaway.sh --find             prints the PostgreSQL bin directory,
#                                              or fails when none is installed
#
# Uses the local PostgreSQL server binaries (apt-get install postgresql); the
# cluster lives in a fresh private temporary directory (owned by postgres when
# run as root) and listens only on a Unix socket there, on port
# FLEET_TEST_PG_PORT (54329). COMMAND runs in the caller's directory.
set -euo pipefail

PG_BIN=""
for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && PG_BIN=$dir
done
if [ -z "$PG_BIN" ] && command -v initdb >/dev/null; then
    PG_BIN=$(dirname "$(command -v initdb)")
fi
if [ "${1:-}" = "--find" ]; then
    [ -n "$PG_BIN" ] && echo "$PG_BIN"
    [ -n "$PG_BIN" ]
    exit
fi
if [ -z "$PG_BIN" ]; then
    echo "pg-throwaway: no PostgreSQL server binaries found (apt-get install postgresql)" >&2
    exit 127
fi
if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...] | --find" >&2
    exit 2
fi

PGPORT=${FLEET_TEST_PG_PORT:-54329}
AS=()
if [ "$(id -u)" = "0" ]; then
    # PostgreSQL refuses to run as root; as postgres it cannot enter a private
    # checkout (under /root, or in a mktemp -d folder), so the cluster lives in
    # a temporary directory of its own, made by postgres.
    AS=(runuser -u postgres --)
    PGDIR=$(cd / && "${AS[@]}" mktemp -d "${TMPDIR:-/tmp}/fleet-pgtest.XXXXXX" 2>/dev/null) ||
        PGDIR=$(cd / && "${AS[@]}" mktemp -d /tmp/fleet-pgtest.XXXXXX)
else
    PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/fleet-pgtest.XXXXXX")
fi
# From / : postgres may not enter the caller's directory either.
as_pg() { (cd / && "${AS[@]}" "$@"); }
stop_pg() {
    as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
}
trap stop_pg EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -U fleet --auth=trust -E UTF8 >/dev/null ||
    { echo "pg-throwaway: initdb failed" >&2; exit 1; }
as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses='' -c fsync=off -c max_connections=100" start >/dev/null ||
    { cat "$PGDIR/server.log" >&2; exit 1; }
"$PG_BIN/createdb" -h "$PGDIR" -p "$PGPORT" -U fleet fleet
set +e
DATABASE_URL="postgres://fleet@/fleet?host=$PGDIR&port=$PGPORT" "$@"
