"""``make test``'s PostgreSQL pass: the throwaway cluster of ``scripts/pg-throwaway.sh``.

``scripts/test.sh`` runs pytest on PostgreSQL through that script. As root the
cluster runs as ``postgres``, which must reach its directory even when the
checkout lives where only root may go (under ``/root``, in a ``mktemp -d``
folder): the script is run here from a copy of the checkout in a mode-700
directory, on a free port (the engineers' shared server already holds 54400).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_support import ROOT, clean_environ, free_port

# The cluster script needs PostgreSQL's binaries, not the PostgreSQL pass.
pytestmark = pytest.mark.once

SCRIPT = ROOT / "scripts" / "pg-throwaway.sh"
# Connects to the database DATABASE_URL names and prints the socket directory.
PROBE = (
    "import os, sys, psycopg; "
    "url = os.environ['DATABASE_URL']; "
    "row = psycopg.connect(url).execute('select current_database(), current_user').fetchone(); "
    "print(url.split('host=')[1].split('&')[0]); print(*row); sys.exit(7)"
)


@pytest.fixture
def postgres_binaries() -> str:
    found = subprocess.run([SCRIPT, "--find"], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI must test the PostgreSQL pass, but no PostgreSQL binaries are installed"
            )
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    return found.stdout.strip()


@pytest.fixture
def private_checkout(tmp_path: Path) -> Path:
    """The scripts of this checkout, copied into a directory only its owner may enter."""
    private = tmp_path / "private"
    checkout = private / "fleet"
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    private.chmod(0o700)
    tmp_path.chmod(0o700)
    return checkout


def test_the_throwaway_cluster_starts_from_a_private_checkout_and_is_removed(
    postgres_binaries: str, private_checkout: Path
) -> None:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the private-checkout case needs root (the cluster runs as postgres)")
    env = {**clean_environ(), "FLEET_TEST_PG_PORT": str(free_port())}

    result = subprocess.run(
        [private_checkout / "scripts" / "pg-throwaway.sh", sys.executable, "-c", PROBE],
        cwd=private_checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 7, result.stdout + result.stderr  # the command's own status
    socket_dir, identity = result.stdout.splitlines()[-2:]
    assert identity == "fleet fleet"
    assert not Path(socket_dir).exists()  # stopped and removed
    assert not (private_checkout / "var").exists()  # nothing left in the checkout
    assert stat.S_IMODE(private_checkout.parent.stat().st_mode) == 0o700


def test_make_test_runs_the_postgresql_pass_through_the_throwaway_cluster() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()

    assert (
        'run_pytest PostgreSQL scripts/pg-throwaway.sh "$PY" -m pytest'
        ' "${WORKERS[@]}" "${PG_MARKS[@]}" "$@"'
    ) in script


def test_make_test_checks_for_missing_migrations_and_runs_once_tests_once() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()

    assert "manage.py makemigrations --check --dry-run" in script
    assert 'PG_MARKS=(-m "not once")' in script
