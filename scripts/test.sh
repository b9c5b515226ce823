#!/usr/bin/env bash
# The whole test suite: lint and types, then pytest on SQLite, then pytest on PostgreSQL.
#
# PostgreSQL: uses FLEET_TEST_DATABASE_URL when set; otherwise starts a
# throwaway cluster from the local PostgreSQL binaries (apt-get install
# postgresql) with scripts/pg-throwaway.sh, which stops and removes it afterwards. Without PostgreSQL the
# PostgreSQL pass is skipped with a visible reason -- except in CI (CI=true),
# where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-test-only-secret-key-not-for-production}

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports  # the layering contracts in pyproject.toml

# Types ([tool.mypy] in pyproject.toml: what is checked, how strictly). The
# django-stubs plugin loads the settings, hence DJANGO_SECRET_KEY above.
echo "== mypy"
.venv/bin/mypy

# A model change without its migration fails here, not on someone's deploy.
echo "== migrations"
(unset DATABASE_URL; FLEET_SQLITE_PATH=:memory: "$PY" manage.py makemigrations --check --dry-run)

# run_pytest LABEL COMMAND...: run the pytest COMMAND; no tests collected is a failure.
run_pytest() {
    local label=$1; shift
    echo "== pytest ($label)"
    set +e
    "$@"
    local rc=$?
    set -e
    if [ $rc -eq 5 ]; then
        if [ "$label" = PostgreSQL ] && [ "$SELECTED" = 1 ]; then
            # A chosen subset may hold only `once` tests; the whole suite never does.
            echo "SKIPPED: the PostgreSQL pass -- every selected test is marked once" >&2
            return 0
        fi
        echo "FAILED: no tests ran on $label" >&2
        exit 1
    fi
    if [ $rc -ne 0 ]; then
        echo "FAILED: pytest on $label exited $rc" >&2
        exit $rc
    fi
}

mkdir -p var

# Two pytest-xdist workers by default: much of the suite waits on servers,
# subprocesses and the browser, so two workers overlap those waits even on two
# cores. Each worker has its own test database (pytest-django suffixes the name:
# var/test.sqlite3_gw0, test_fleet_gw1). FLEET_TEST_WORKERS=0 runs in one process.
WORKERS=(-n "${FLEET_TEST_WORKERS:-2}")

# Tests marked `once` (they spawn processes or drive a browser, and the database
# engine is not their subject) run in the SQLite pass only.
PG_MARKS=(-m "not once")
SELECTED=$(( $# > 0 ))  # pytest arguments given: a subset, maybe of `once` tests only

# --- SQLite -------------------------------------------------------------------
(unset DATABASE_URL; export FLEET_TEST_SQLITE_PATH="${FLEET_TEST_SQLITE_PATH:-$PWD/var/test.sqlite3}"; run_pytest SQLite "$PY" -m pytest "${WORKERS[@]}" "$@")

# --- PostgreSQL ---------------------------------------------------------------
if [ -n "${FLEET_TEST_DATABASE_URL:-}" ]; then
    (export DATABASE_URL=$FLEET_TEST_DATABASE_URL; run_pytest PostgreSQL "$PY" -m pytest "${WORKERS[@]}" "${PG_MARKS[@]}" "$@")
    exit 0
fi

if ! scripts/pg-throwaway.sh --find >/dev/null; then
    if [ "${CI:-}" = "true" ]; then
        echo "FAILED: PostgreSQL is not installed, and CI must test on it" >&2
        exit 1
    fi
    echo "SKIPPED: the PostgreSQL pass -- no PostgreSQL server binaries found" \
         "(apt-get install postgresql, or set FLEET_TEST_DATABASE_URL)" >&2
    exit 0
fi
run_pytest PostgreSQL scripts/pg-throwaway.sh "$PY" -m pytest "${WORKERS[@]}" "${PG_MARKS[@]}" "$@"
