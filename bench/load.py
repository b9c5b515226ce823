"""Load benchmark: the fleet simulator against the production command.

Run: ``.venv/bin/python bench/load.py`` (about 3 minutes: 50 agents for 60 s
on SQLite, then on PostgreSQL); ``--quick`` for a smoke run (10 agents, 10 s).

For each database it starts ``scripts/serve.sh`` (``make serve``: migrate,
collectstatic, gunicorn with ``FLEET_WORKERS=2``) on a free loopback port in
the documented production configuration (PostgreSQL with ``FLEET_DB_POOL=1``),
makes an API key and a dashboard user, and runs the fleet simulator
(``fleet.simulator.run_fleet``: agents as threads, turns back to back with
``--step-delay`` between steps) while one more client loads the fleet page
(``/``, logged in) once a second. It prints requests per second, errors
(target 0), and the p50/p99 latency of appends and of the fleet page.

SQLite: a fresh file in a temporary directory. PostgreSQL: ``--pg-url`` (a
throwaway database is created on that server and dropped afterwards), else a
throwaway cluster from the local server binaries (``apt-get install
postgresql``) with default durability settings (fsync on); without either the
PostgreSQL run is skipped. See bench/README.md for the figures measured.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.simulator import ApiClient, ApiError, Behaviour, run_fleet  # noqa: E402

PYTHON = sys.executable


# --- measuring ---------------------------------------------------------------------


@dataclass
class Timings:
    lock: threading.Lock = field(default_factory=threading.Lock)
    appends: list[float] = field(default_factory=list)
    requests: int = 0
    server_errors: int = 0  # 5xx answers
    broken: int = 0  # no answer at all

    def add(self, method: str, path: str, seconds: float, status: int | None) -> None:
        with self.lock:
            self.requests += 1
            if status is None:
                self.broken += 1
            elif status >= 500:
                self.server_errors += 1
            elif method == "POST" and path.endswith("/messages") and status < 300:
                self.appends.append(seconds)


def timed_client(timings: Timings) -> Callable[[], None]:
    """Time every request the simulator sends; returns the undo."""
    original = ApiClient.send

    def send(self: ApiClient, method: str, path: str, body: bytes | None = None) -> Any:
        start = time.perf_counter()
        try:
            response = original(self, method, path, body)
        except ApiError:
            timings.add(method, path, time.perf_counter() - start, None)
            raise
        timings.add(method, path, response.seconds, response.status)
        return response

    # The ignores: patching the method is the point (timed for the run, then undone).
    ApiClient.send = send  # type: ignore[method-assign]

    def undo() -> None:
        ApiClient.send = original  # type: ignore[method-assign]

    return undo


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds == seconds else "n/a"


# --- the server ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FLEET_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        FLEET_STATIC_ROOT=str(workdir / "static"),
        FLEET_WORKERS="2",
        FLEET_PYTHON=PYTHON,
    )
    return env


def manage(env: dict[str, str], *args: str, extra: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env={**env, **(extra or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


class Server:
    """``scripts/serve.sh`` on 127.0.0.1; its log (JSON lines) in the work directory."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "scripts" / "serve.sh")],
                cwd=ROOT,
                env={**env, "FLEET_BIND": f"127.0.0.1:{self.port}"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if get(self.url, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def get(
    url: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes, http.client.HTTPResponse]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"not an http URL with a host: {url!r}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def log_in(url: str, username: str, password: str) -> str:
    """The ``Cookie`` header of a logged-in dashboard session."""
    status, page, response = get(url, "/login/")
    csrf_cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie") or "")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if status != 200 or not csrf_cookie or not token:
        raise SystemExit(f"no log-in form at {url}/login/ ({status})")
    form = urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)}
    )
    status, _, response = get(
        url,
        "/login/",
        body=form.encode(),
        headers={
            "Cookie": f"csrftoken={csrf_cookie.group(1)}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
    if status != 302 or not session:
        raise SystemExit(f"the log-in was refused ({status})")
    return f"sessionid={session.group(1)}"


def watch_page(
    url: str, cookie: str, stop: threading.Event, out: list[float], errors: list[str]
) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        try:
            status, _, _ = get(url, "/", headers={"Cookie": cookie})
        except OSError as exc:
            errors.append(f"fleet page: {exc}")
            status = 0
        if status == 200:
            out.append(time.perf_counter() - start)
        elif status:
            errors.append(f"fleet page: HTTP {status}")
        stop.wait(max(0.0, 1.0 - (time.perf_counter() - start)))


# --- PostgreSQL ------------------------------------------------------------------------


class Postgres:
    """A database for the run: on ``--pg-url``'s server, or in a throwaway cluster."""

    def __init__(self, workdir: Path, pg_url: str | None) -> None:
        self.workdir = workdir
        self.cluster: Path | None = None
        self.as_postgres: list[str] = []
        self.bin = ""
        if pg_url:
            self.admin_url = pg_url
        else:
            self.admin_url = self._start_cluster()
        self.name = f"fleet_load_{secrets.token_hex(4)}"
        self._sql(f'CREATE DATABASE "{self.name}"')
        self.url = _with_database(self.admin_url, self.name)

    def _start_cluster(self) -> str:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        if not initdb:
            raise LookupError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = str(Path(initdb).parent)
        self.cluster = self.workdir / "pg"
        self.cluster.mkdir()
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.workdir, 0o755)  # noqa: S103 - the postgres user must reach it
            shutil.chown(self.cluster, "postgres")
        port = free_port()
        run: dict[str, Any] = {"check": True, "capture_output": True}
        subprocess.run(
            [*self.as_postgres, initdb, "-D", f"{self.cluster}/data", "-U", "fleet",
             "--auth=trust", "-E", "UTF8"],
            **run,
        )  # fmt: skip
        subprocess.run(
            [*self.as_postgres, f"{self.bin}/pg_ctl", "-D", f"{self.cluster}/data", "-w",
             "-l", f"{self.cluster}/server.log", "-o",
             f"-p {port} -k {self.cluster} -c listen_addresses='' -c max_connections=100",
             "start"],
            **run,
        )  # fmt: skip
        return f"postgres://fleet@/postgres?host={self.cluster}&port={port}"

    def _sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(_dsn(self.admin_url), autocommit=True) as conn:
            conn.execute(statement)

    def close(self) -> None:
        try:
            self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            if self.cluster:
                subprocess.run(
                    [*self.as_postgres, f"{self.bin}/pg_ctl", "-D", f"{self.cluster}/data",
                     "-m", "fast", "stop"],
                    capture_output=True,
                    check=False,
                )  # fmt: skip


def table_stats(url: str, label: str) -> str:
    """Live and dead tuples, autovacuum runs and sizes of the store's largest tables."""
    import psycopg

    with psycopg.connect(_dsn(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count, "
            "last_autovacuum, pg_relation_size(relid), pg_indexes_size(relid), "
            "pg_total_relation_size(relid) FROM pg_stat_user_tables "
            "WHERE relname LIKE 'agent_sessions_%' ORDER BY pg_total_relation_size(relid) DESC "
            "LIMIT 8"
        ).fetchall()
    lines = [f"tables {label}: name, live, dead, autovacuums, autoanalyzes, last autovacuum, "
             "heap MB, indexes MB, total MB"]  # fmt: skip
    for name, live, dead, vacuums, analyzes, last, heap, indexes, total in rows:
        when = last.strftime("%H:%M:%S") if last else "-"
        lines.append(
            f"  {name}: {live} {dead} {vacuums} {analyzes} {when} "
            f"{heap / 2**20:.0f} {indexes / 2**20:.0f} {total / 2**20:.0f}"
        )
    return "\n".join(lines)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{name}").geturl()


def _dsn(url: str) -> str:
    """A psycopg connection string for a ``postgres://`` URL (``?host=`` socket dirs too)."""
    import dj_database_url

    db = dj_database_url.parse(url)
    params = {
        "dbname": db["NAME"],
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
        "host": db.get("HOST") or db.get("OPTIONS", {}).get("host"),
        "port": db.get("PORT") or db.get("OPTIONS", {}).get("port"),
    }
    return " ".join(f"{k}={v}" for k, v in params.items() if v)


# --- one run -----------------------------------------------------------------------


def run(label: str, env: dict[str, str], workdir: Path, args: argparse.Namespace) -> str:
    server = Server(env, workdir)
    try:
        server.wait_ready()
        token = manage(env, "create_api_key", "load", "-v", "0")
        password = secrets.token_urlsafe(12)
        manage(env, "ensure_admin", "admin", extra={"DJANGO_SUPERUSER_PASSWORD": password})
        cookie = log_in(server.url, "admin", password)

        timings = Timings()
        undo = timed_client(timings)
        page: list[float] = []
        page_errors: list[str] = []
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_page, args=(server.url, cookie, stop, page, page_errors)
        )
        watcher.start()
        try:
            report = run_fleet(
                url=server.url,
                key=token,
                agents=args.agents,
                rate=0,
                duration=args.duration,
                behaviour=Behaviour(step_delay=args.step_delay),
                seed=1,
            )
        finally:
            stop.set()
            watcher.join()
            undo()
    finally:
        server.stop()

    stats = report.stats
    errors = stats.errors + len(page_errors)
    served = server_side_appends(server.log)
    line = (
        f"{label}: {args.agents} agents for {report.seconds:.0f} s, 2 workers: "
        f"{timings.requests} requests ({timings.requests / report.seconds:.0f}/s), "
        f"{stats.messages} messages; errors {errors} "
        f"(5xx {timings.server_errors}, no answer {timings.broken}); "
        f"append p50 {ms(percentile(timings.appends, 50))} "
        f"p99 {ms(percentile(timings.appends, 99))} ({len(timings.appends)}); "
        f"fleet page p50 {ms(percentile(page, 50))} p99 {ms(percentile(page, 99))} ({len(page)})"
        f"\n  in the server (its request log): append p50 {ms(percentile(served, 50))} "
        f"p99 {ms(percentile(served, 99))}; the rest is queueing for a worker"
    )
    for sample in [*stats.error_samples, *page_errors][:5]:
        line += f"\n  error: {sample}"
    return line


def server_side_appends(log: Path) -> list[float]:
    """Seconds the app spent on each append, from its JSON request log."""
    seconds = []
    for line in log.read_text(errors="replace").splitlines():
        if '"fleet.request"' not in line:
            continue
        entry = json.loads(line)
        if entry["method"] == "POST" and entry["path"].endswith("/messages"):
            seconds.append(entry["duration_ms"] / 1000)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 agents for 10 s")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument(
        "--step-delay", type=float, default=Behaviour.step_delay, help="mean seconds between steps"
    )
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get("FLEET_BENCH_DATABASE_URL"))
    parser.add_argument(
        "--pg-database",
        default=None,
        help="PostgreSQL: load this existing database (kept; e.g. bench/generate.py's) and "
        "print its tables' dead tuples and sizes before and after",
    )
    args = parser.parse_args()
    if args.quick:
        args.agents, args.duration = 10, 10.0

    print(f"Load: simulator against scripts/serve.sh; {os.cpu_count()} cores", flush=True)
    if args.pg_database:
        with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
            workdir = Path(tmp)
            env = {**base_env(workdir), "DATABASE_URL": args.pg_database, "FLEET_DB_POOL": "1"}
            print(table_stats(args.pg_database, "before"), flush=True)
            print(run("PostgreSQL (existing store)", env, workdir, args), flush=True)
            print(table_stats(args.pg_database, "after"), flush=True)
        return
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
            workdir = Path(tmp)
            env = {**base_env(workdir), "FLEET_SQLITE_PATH": str(workdir / "fleet.sqlite3")}
            print(run("SQLite", env, workdir, args), flush=True)
    if args.database in ("postgres", "both"):
        with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
            workdir = Path(tmp)
            try:
                database = Postgres(workdir, args.pg_url)
            except (LookupError, subprocess.CalledProcessError) as exc:
                print(f"PostgreSQL: skipped ({exc})")
                return
            try:
                env = {**base_env(workdir), "DATABASE_URL": database.url, "FLEET_DB_POOL": "1"}
                print(run("PostgreSQL", env, workdir, args), flush=True)
            finally:
                database.close()


if __name__ == "__main__":
    main()
