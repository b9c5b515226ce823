"""Load benchmark: the fleet simulator against the production command.

Run: ``.venv/bin/python bench/load.py`` (about 3 minutes: 50 agents for 60 s
on SQLite, then on PostgreSQL); ``--quick`` for a smoke run (10 agents, 10 s).

For each database it starts ``scripts/serve.sh`` (``make serve``: migrate,
collectstatic, gunicorn with ``FLEET_WORKERS=2`` sync workers, or
``--workers``/``--worker-class``/``--threads``; lists such as ``--workers 1,2,4
--worker-class sync,gthread`` run every combination, each on a fresh database)
on a free loopback port in the documented production configuration (PostgreSQL
with ``FLEET_DB_POOL=1``), makes an API key and a dashboard user, and runs the
fleet simulator (``fleet.simulator.run_fleet``: agents as threads, each with a
keep-alive connection, turns back to back with ``--step-delay`` between steps)
while one more client loads the fleet page (``/``, logged in) once a second.
It prints messages and requests per second, errors (target 0), the p50/p95/p99
latency of every request, of appends and of the fleet page, the CPU (in cores)
of the generator, the server and the run's PostgreSQL backends against the
whole machine's, and, on PostgreSQL, what the backends waited for.

SQLite: a fresh file in a temporary directory. PostgreSQL: ``--pg-url`` (a
throwaway database, ``--pg-database`` or a random name, is created on that
server and dropped afterwards), else a throwaway cluster from the local server
binaries (``apt-get install postgresql``) with default durability settings
(fsync on); without either the PostgreSQL run is skipped. See bench/README.md
for the figures measured.
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
    every: list[float] = field(default_factory=list)  # every answered request
    requests: int = 0
    server_errors: int = 0  # 5xx answers
    broken: int = 0  # no answer at all

    def add(self, method: str, path: str, seconds: float, status: int | None) -> None:
        with self.lock:
            self.requests += 1
            if status is None:
                self.broken += 1
                return
            self.every.append(seconds)
            if status >= 500:
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


# --- where the CPU goes, and what the database waits for ----------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_cpu(pid: int | str, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) of a live process; ``reaped`` adds its waited-for children's."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def group_cpu(pgid: int) -> float:
    """CPU seconds of the processes of group ``pgid`` (the server: gunicorn and its
    workers); workers gunicorn replaced count through their parent's ``cutime``."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) and int(fields[2]) == pgid:
            total += process_cpu(entry, reaped=int(entry) == pgid)
    return total


def machine_cpu() -> float:
    """CPU seconds every core has been busy (all processes, the neighbours' too)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


class DatabaseWatch(threading.Thread):
    """Samples PostgreSQL's ``pg_stat_activity`` for the run's database every
    ``interval`` seconds: the app's connections, what its active backends wait
    for (``Lock`` = a row or transaction lock another one holds), and their CPU."""

    def __init__(self, url: str, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.stop = threading.Event()
        self.samples = 0
        self.connections_max = 0
        self.active = 0  # backend-samples running a statement
        self.waits: dict[str, int] = {}
        self.churn = ""  # the message table's inserts, updates and dead rows at the end
        self.first_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}
        self.error = ""

    def run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(_dsn(self.url), autocommit=True) as conn:
                while not self.stop.wait(self.interval):
                    self._sample(conn)
                row = conn.execute(
                    "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_dead_tup"
                    " FROM pg_stat_user_tables WHERE relname = 'agent_sessions_message'"
                ).fetchone()
                if row:
                    self.churn = (
                        "message table: {} inserted, {} updated ({} HOT), {} deleted, "
                        "{} dead rows".format(*row)
                    )
        except Exception as exc:  # reported with the figures, not raised in a thread
            self.error = str(exc)

    def _sample(self, conn: Any) -> None:
        rows = conn.execute(
            "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchall()
        self.samples += 1
        self.connections_max = max(self.connections_max, len(rows))
        for pid, state, wait_type, wait_event in rows:
            cpu = process_cpu(pid)
            self.first_cpu.setdefault(pid, cpu)
            self.last_cpu[pid] = cpu
            if state == "active":
                self.active += 1
                if wait_type:
                    name = f"{wait_type}:{wait_event}"
                    self.waits[name] = self.waits.get(name, 0) + 1

    def cpu(self) -> float:
        return sum(self.last_cpu[pid] - self.first_cpu[pid] for pid in self.last_cpu)

    def summary(self) -> str:
        if self.error:
            return f"database watch failed: {self.error}"
        if not self.samples:
            return "database watch: no samples"
        waits = sorted(self.waits.items(), key=lambda item: -item[1])
        locks = sum(n for name, n in waits if name.startswith("Lock:"))
        shown = ", ".join(f"{name} {n}" for name, n in waits[:4]) or "none"
        return (
            f"database: up to {self.connections_max} connections; "
            f"{self.active / self.samples:.2f} backends active on average, "
            f"waiting on a lock in {locks / max(self.active, 1):.0%} of those samples "
            f"(waits seen: {shown})" + (f"\n  {self.churn}" if self.churn else "")
        )


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

    def __init__(self, workdir: Path, pg_url: str | None, name: str | None = None) -> None:
        self.workdir = workdir
        self.cluster: Path | None = None
        self.as_postgres: list[str] = []
        self.bin = ""
        if pg_url:
            self.admin_url = pg_url
        else:
            self.admin_url = self._start_cluster()
        self.name = name or f"fleet_load_{secrets.token_hex(4)}"
        self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
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

    def setting(self, name: str) -> str:
        import psycopg

        with psycopg.connect(_dsn(self.admin_url), autocommit=True) as conn:
            row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
        return str(row[0]) if row else "?"

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


@dataclass(frozen=True)
class Shape:
    """How the server runs: ``workers`` processes of ``worker_class`` with ``threads`` each."""

    workers: int = 2
    worker_class: str = "sync"
    threads: int = 1

    def env(self) -> dict[str, str]:
        return {
            "FLEET_WORKERS": str(self.workers),
            "FLEET_WORKER_CLASS": self.worker_class,
            "FLEET_THREADS": str(self.threads),
        }

    def __str__(self) -> str:
        name = f"{self.workers} {self.worker_class} worker{'s' if self.workers > 1 else ''}"
        return name + (f" × {self.threads} threads" if self.worker_class == "gthread" else "")


def run(
    label: str,
    env: dict[str, str],
    workdir: Path,
    args: argparse.Namespace,
    shape: Shape,
    database_url: str | None = None,
) -> str:
    env = {**env, **shape.env()}
    if database_url:
        # Every thread of a worker holds a connection while it serves a request.
        env["FLEET_DB_POOL_MAX_SIZE"] = str(max(4, shape.threads))
    server = Server(env, workdir)
    watch: DatabaseWatch | None = None
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
        if database_url:
            watch = DatabaseWatch(database_url)
            watch.start()
        load_before = load_average()
        cpu_before = (os.times(), group_cpu(server.process.pid), machine_cpu())
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
            mine, served_cpu, busy = os.times(), group_cpu(server.process.pid), machine_cpu()
            load_after = load_average()
            if watch:
                watch.stop.set()
                watch.join()
    finally:
        server.stop()

    seconds = report.seconds
    generator = (mine.user + mine.system - cpu_before[0].user - cpu_before[0].system) / seconds
    server_cores = (served_cpu - cpu_before[1]) / seconds
    database_cores = watch.cpu() / seconds if watch else 0.0
    machine = (busy - cpu_before[2]) / seconds
    others = machine - generator - server_cores - database_cores
    stats = report.stats
    errors = stats.errors + len(page_errors)
    served = server_side_appends(server.log)
    every = timings.every
    line = (
        f"{label}, {shape}: {args.agents} agents for {seconds:.0f} s (step delay "
        f"{args.step_delay} s), load average {load_before} -> {load_after}\n"
        f"  {stats.messages / seconds:.0f} messages/s, {timings.requests / seconds:.0f} "
        f"requests/s ({timings.requests} requests, {stats.messages} messages); "
        f"errors {errors} (5xx {timings.server_errors}, no answer {timings.broken})\n"
        f"  every request p50 {ms(percentile(every, 50))} p95 {ms(percentile(every, 95))} "
        f"p99 {ms(percentile(every, 99))}; append p50 {ms(percentile(timings.appends, 50))} "
        f"p99 {ms(percentile(timings.appends, 99))} ({len(timings.appends)}); "
        f"fleet page p50 {ms(percentile(page, 50))} p99 {ms(percentile(page, 99))} ({len(page)})"
        f"\n  in the server (its request log): append p50 {ms(percentile(served, 50))} "
        f"p99 {ms(percentile(served, 99))}; the rest is queueing for a worker and the client"
        f"\n  CPU in cores (of {os.cpu_count()}): generator {generator:.2f}, server "
        f"{server_cores:.2f}, PostgreSQL backends {database_cores:.2f}, everything else on "
        f"the machine {max(others, 0):.2f}; machine busy {machine:.2f}"
    )
    if watch:
        line += f"\n  {watch.summary()}"
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


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def _names(text: str) -> list[str]:
    names = text.split(",")
    for name in names:
        if name not in ("sync", "gthread"):
            raise argparse.ArgumentTypeError(f"not a worker class: {name!r}")
    return names


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
        help="name of the database made (and dropped) on --pg-url's server for each run "
        "(default: a random fleet_load_… name)",
    )
    parser.add_argument(
        "--workers", type=_numbers, default=[2], help="gunicorn workers; a list (1,2,4) runs each"
    )
    parser.add_argument(
        "--worker-class",
        type=_names,
        default=["sync"],
        help="sync or gthread (keeps connections alive); a list (sync,gthread) runs each",
    )
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument(
        "--store-url",
        default=None,
        help="PostgreSQL: load this existing database (kept; e.g. bench/generate.py's) and "
        "print its tables' dead tuples and sizes before and after",
    )
    args = parser.parse_args()
    if args.quick:
        args.agents, args.duration = 10, 10.0
    shapes = [
        Shape(workers, worker_class, args.threads if worker_class == "gthread" else 1)
        for worker_class in args.worker_class
        for workers in args.workers
    ]

    print(
        f"Load: simulator against scripts/serve.sh; {os.cpu_count()} cores, "
        f"load average {load_average()}",
        flush=True,
    )
    if args.store_url:
        for shape in shapes:
            with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
                workdir = Path(tmp)
                env = {**base_env(workdir), "DATABASE_URL": args.store_url, "FLEET_DB_POOL": "1"}
                print(table_stats(args.store_url, "before"), flush=True)
                print(
                    run("PostgreSQL (existing store)", env, workdir, args, shape, args.store_url),
                    flush=True,
                )
                print(table_stats(args.store_url, "after"), flush=True)
        return
    for shape in shapes:
        if args.database in ("sqlite", "both"):
            with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
                workdir = Path(tmp)
                env = {**base_env(workdir), "FLEET_SQLITE_PATH": str(workdir / "fleet.sqlite3")}
                print(run("SQLite", env, workdir, args, shape), flush=True)
        if args.database in ("postgres", "both"):
            with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
                workdir = Path(tmp)
                try:
                    database = Postgres(workdir, args.pg_url, args.pg_database)
                except (LookupError, subprocess.CalledProcessError) as exc:
                    print(f"PostgreSQL: skipped ({exc})")
                    return
                try:
                    env = {**base_env(workdir), "DATABASE_URL": database.url, "FLEET_DB_POOL": "1"}
                    label = f"PostgreSQL (fsync={database.setting('fsync')})"
                    print(run(label, env, workdir, args, shape, database.url), flush=True)
                finally:
                    database.close()


if __name__ == "__main__":
    main()
