"""Page benchmark: server-side time of the dashboard's pages on a large fleet.

Run: ``.venv/bin/python bench/pages.py`` (the issue's size: a demo fleet of
100 000 sessions and about 1 000 000 messages, made with ``demo_fleet``; that
takes a long while on 2 cores) or ``--quick`` (2 000 sessions, a smoke run of
a few minutes). ``--db PATH`` reuses an SQLite database made before
(``FLEET_SQLITE_PATH=PATH manage.py demo_fleet --sessions 100000
--messages-per-session 10``); the script adds the 10 000-message session if it
is missing. Without ``--db`` it builds a throwaway database in a temporary
directory. ``--database-url postgres://…`` runs against PostgreSQL instead
(the database must exist; the fleet is built in it if it holds none, and kept).

It requests each page in-process through Django's test client (middleware,
log-in, view, template: everything but the network) and prints p50 and p95 of
the wall time and the queries per request, for: the full fleet page, an
unchanged poll, a changed poll (numbers, and the table), a filtered fleet
page, the session page of a 10 000-message session, a search; and, in the
same run, a trivial log-in-required view rendering a constant template.

Targets (issue 4, tightened by issue 16): fleet page p95 ≤ 50 ms, unchanged
poll p95 ≤ 10 ms, filtered fleet page, session page and search p95 ≤ 100 ms,
at most 15 queries per page. The queries are the most any request made; an API
key's last use (written at most once a minute, in whichever request comes due)
is not counted as the page's.

``--matrix`` adds issue 16's filter × sort matrix: the fleet table (the
fragment a filter, sort or page change fetches, ``HX-Target: sessions``: the
rest of the page does not depend on them, and is the "fleet page" case)
under each common filter alone and all of them combined, in every order
the sort links offer (and the two the URL accepts besides), printing p50, p95,
queries and how many sessions match. The filter values come from the fleet:
the most common agent, channel, model and project (the most rows to sort),
the rarest agent (the longest walk of a sort index), a word of the goals.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LONG_KEY = "bench/long-session"
LONG_MESSAGES = 10_000
TARGETS = {
    "fleet page": 50,
    "unchanged poll": 10,
    "filtered fleet page": 100,
    "session page": 100,
    "search": 100,
}
MATRIX_TARGET = 100
MAX_QUERIES = 15
KEY_USE = 'UPDATE "agent_sessions_apikey"'


def setup(db: Path, database_url: str | None = None) -> None:
    os.environ["FLEET_SQLITE_PATH"] = str(db)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-use-0")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["FLEET_LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    import django

    django.setup()
    # No log line per refused request (the search bench sends many on purpose).
    logging.getLogger("django.request").setLevel(logging.ERROR)
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver"]
    # No collectstatic here: plain static storage for {% static %}.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # A gunicorn worker's start-up: importing the WSGI module loads the URL
    # patterns and templates and freezes them out of the collector's scans
    # (fleet.wsgi.prepare_worker), so the pages are timed as a worker serves them.
    import fleet.wsgi  # noqa: F401


def build(sessions: int, per_session: int) -> None:
    from django.core.management import call_command

    from sessions import services
    from sessions.demo.transcript import iter_messages
    from sessions.models import Session

    call_command("migrate", verbosity=0)
    if not Session.objects.exclude(key=LONG_KEY).exists():
        started = time.perf_counter()
        print(f"writing a demo fleet of {sessions:,} sessions (demo_fleet)…", flush=True)
        call_command(
            "demo_fleet",
            sessions=sessions,
            messages_per_session=per_session,
            seed=1,
            stdout=StringIO(),
        )
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    if not Session.objects.filter(key=LONG_KEY).exists():
        batch: list[dict[str, Any]] = []
        for message in iter_messages(LONG_MESSAGES, seed=2):
            batch.append(message)
            if len(batch) == 1000:
                services.messages_append(key=LONG_KEY, messages=batch, session={"agent": "koda"})
                batch = []
        if batch:
            services.messages_append(key=LONG_KEY, messages=batch, session={"agent": "koda"})
    from django.db import connection

    with connection.cursor() as cursor:
        # Fresh planner statistics; on PostgreSQL also the visibility map that
        # autovacuum keeps in a running system (index-only counts need it).
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def constant_view(request: Any) -> Any:
    from django.contrib.auth.decorators import login_required
    from django.http import HttpResponse
    from django.template import engines

    @login_required
    def view(request: Any) -> Any:
        template = engines["django"].from_string("<!doctype html><p>{{ text }}</p>")
        return HttpResponse(template.render({"text": "constant"}, request))

    return view(request)


def urlconf() -> ModuleType:
    from django.urls import include, path

    module = ModuleType("bench_pages_urls")
    vars(module)["urlpatterns"] = [
        path("bench/constant", constant_view),
        path("", include("fleet.urls")),
    ]
    return module


def measure(client: Any, url: str, iterations: int, headers: dict[str, str], fresh: Any) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, queries, statuses = [], [], set()
    key_uses = 0
    for index in range(iterations + 3):
        target = url.format(version=fresh()) if "{version}" in url else url
        # The log keeps 9 000 queries; past them a capture counts none.
        connection.queries_log.clear()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(target, **headers)
            elapsed = time.perf_counter() - started
        statuses.add(response.status_code)
        if index >= 3:  # warm-up requests are not counted
            times.append(elapsed * 1000)
            # An API key's last use is written at most once a minute
            # (ApiKey.authenticate), in whichever request comes due: a
            # clock's write, not the page's. Counted apart.
            uses = sum(1 for query in captured if query["sql"].startswith(KEY_USE))
            key_uses += uses
            queries.append(len(captured) - uses)
    return {
        **percentiles(times),
        "queries": max(queries),
        "key_uses": key_uses,
        "status": "/".join(map(str, sorted(statuses))),
    }


def percentiles(times: list[float]) -> dict[str, float]:
    """p50 and p95 of ``times`` (the benchmarks' one definition of them)."""
    times = sorted(times)
    return {
        "p50": statistics.median(times),
        "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
    }


def logged_in_client() -> Any:
    """A test client logged in as the benchmarks' superuser (made once)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first()
    if user is None:
        user = user_model.objects.create_superuser("bench", "bench@example.com", "bench-pw-1")
    client = Client()
    client.force_login(user)
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 000 sessions, fewer requests")
    parser.add_argument("--db", type=Path, help="reuse this SQLite database (kept)")
    parser.add_argument("--database-url", help="use this PostgreSQL database instead (kept)")
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--messages-per-session", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument(
        "--matrix", action="store_true", help="also time the table's filter × sort matrix"
    )
    parser.add_argument(
        "--matrix-only", action="store_true", help="time only the filter × sort matrix"
    )
    parser.add_argument(
        "--matrix-iterations", type=int, default=20, help="requests per matrix cell"
    )
    parser.add_argument("--page", type=int, default=3, help="the page the matrix requests")
    parser.add_argument(
        "--all-target",
        type=float,
        default=None,
        help="p95 target (ms) for every page and API list (issue 16: 150 at 1 M sessions)",
    )
    args = parser.parse_args()
    sessions = args.sessions or (2_000 if args.quick else 100_000)
    iterations = args.iterations or (20 if args.quick else 50)

    with tempfile.TemporaryDirectory(prefix="fleet-bench-pages-") as work:
        db = args.db or Path(work) / "pages.sqlite3"
        setup(db, args.database_url)
        build(sessions, args.messages_per_session)
        if not args.matrix_only:
            run(iterations, args.all_target)
        if args.matrix or args.matrix_only:
            matrix(args.matrix_iterations, args.page)


def api_token() -> str:
    """A read-only API key for the benchmarks' API requests (a new one per run)."""
    from sessions.models import ApiKey

    return ApiKey.generate(name=f"bench-pages-{time.time():.0f}", read_only=True)[1]


def run(iterations: int, all_target: float | None = None) -> None:
    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from fleet.views.session import session_version
    from sessions.fleet_stats import fleet_version
    from sessions.models import Message, MinuteUsage, Session

    client = logged_in_client()
    long_session = Session.objects.get(key=LONG_KEY)
    hx = {"HTTP_HX_REQUEST": "true"}
    live = {**hx, "HTTP_HX_TARGET": "fleet-live"}
    table = {**hx, "HTTP_HX_TARGET": "sessions"}
    latency = {**hx, "HTTP_HX_TARGET": "fleet-latency"}
    long_url = f"/sessions/{LONG_KEY}/"

    def version() -> str:
        return fleet_version(timezone.now())

    def long_version() -> str:
        return session_version(Session.objects.get(pk=long_session.pk))

    cases = [
        ("constant template", "/bench/constant", {}, None),
        ("fleet page", "/", {}, None),
        ("unchanged poll", "/?v={version}", live, version),
        ("unchanged table poll", "/?v={version}", table, version),
        ("changed poll", "/?v=stale", live, None),
        ("changed table poll", "/?v=stale", table, None),
        ("latency section", "/", latency, None),
        ("filtered fleet page", "/?status=completed&channel=cli&sort=-cost&page=3", {}, None),
        ("session page", long_url, {}, None),
        ("unchanged session poll", long_url + "?tail=9990&v={version}", hx, long_version),
        ("search", "/search?q=failing+tests+retry", {}, None),
    ]
    # Every other page and API list (issue 16): a typical session, the
    # incidents page, the admin's lists, and the JSON API's reads.
    # Quoted: replicated keys end in "#r", which a URL would cut off.
    typical = quote(
        Session.objects.exclude(key=LONG_KEY)
        .order_by("-last_active_at")
        .values_list("key", flat=True)[100:101]
        .get(),
        safe="/",
    )
    agent = Session.objects.exclude(key=LONG_KEY).values_list("agent", flat=True)[:1].get()
    api = {"HTTP_AUTHORIZATION": f"Bearer {api_token()}"}
    v1, admin = "/api/v1", "/admin/agent_sessions"
    cases += [
        ("session page (typical)", f"/sessions/{typical}/", {}, None),
        ("search (rare word)", "/search?q=parse_created_at", {}, None),
        ("search (common word)", "/search?q=the", {}, None),
        ("incidents page", "/incidents", {}, None),
        ("admin sessions", "/admin/agent_sessions/session/", {}, None),
        ("admin sessions, filtered", f"{admin}/session/?status__exact=failed", {}, None),
        ("admin messages", "/admin/agent_sessions/message/", {}, None),
        ("admin daily usage", "/admin/agent_sessions/dailyusage/", {}, None),
        ("metrics", "/metrics", {"HTTP_AUTHORIZATION": "Bearer bench-metrics"}, None),
        ("API sessions", f"{v1}/sessions", api, None),
        ("API sessions, agent+status", f"{v1}/sessions?agent={agent}&status=failed", api, None),
        ("API sessions, channel+model", f"{v1}/sessions?channel=cli&model=gpt-5", api, None),
        ("API sessions, counted", f"{v1}/sessions?count=true", api, None),
        ("API sessions running", f"{v1}/sessions/running", api, None),
        ("API sessions stuck", f"{v1}/sessions/stuck", api, None),
        ("API session", f"{v1}/sessions/{typical}", api, None),
        ("API messages (long)", f"{v1}/sessions/{LONG_KEY}/messages", api, None),
        ("API messages all (long)", f"{v1}/sessions/{LONG_KEY}/messages?view=all", api, None),
        ("API messages (typical)", f"{v1}/sessions/{typical}/messages", api, None),
        ("API pending tool calls", f"{v1}/sessions/{LONG_KEY}/pending-tool-calls", api, None),
        ("API session usage", f"{v1}/sessions/{LONG_KEY}/usage", api, None),
        ("API recent messages", f"{v1}/messages/recent", api, None),
        ("API search", f"{v1}/search?q=failing+tests+retry", api, None),
        ("API search (common word)", f"{v1}/search?q=the", api, None),
        ("API fleet", f"{v1}/fleet", api, None),
        ("API compaction stats", f"{v1}/compaction-stats", api, None),
        ("API budgets", f"{v1}/budgets", api, None),
    ]
    counts = (Session.objects.count(), Message.objects.count())
    print(
        f"fleet ({connection.vendor}): {counts[0]:,} sessions, {counts[1]:,} messages; "
        f"{iterations} requests each"
    )
    # The burn rate's load: a fleet built hours ago has an empty last hour.
    hour_ago = timezone.now() - timedelta(hours=1)
    recent = Message.objects.filter(created_at__gte=hour_ago, session__last_active_at__gte=hour_ago)
    buckets = MinuteUsage.objects.filter(minute__gte=hour_ago).count()
    print(f"last hour: {recent.count():,} messages, {buckets:,} minute usage buckets")
    print(f"{'':24} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}  status  target")
    metrics = {"FLEET_METRICS_TOKEN": "bench-metrics"}
    with override_settings(ROOT_URLCONF=urlconf(), **metrics):
        for name, url, headers, fresh in cases:
            figures = measure(client, url, iterations, headers, fresh)
            target: float | None = TARGETS.get(name)
            if all_target is not None and name != "constant template":
                target = all_target
            verdict = ""
            if target is not None:
                met = figures["p95"] <= target and figures["queries"] <= MAX_QUERIES
                verdict = f"p95 ≤ {target} ms: {'met' if met else 'MISSED'}"
            if figures["key_uses"]:
                verdict += f" (+{figures['key_uses']} key-use write)"
            print(
                f"{name:24} {figures['p50']:8.1f} {figures['p95']:8.1f} "
                f"{figures['queries']:8d}  {figures['status']:6}  {verdict}"
            )


def matrix_filters() -> dict[str, dict[str, str]]:
    """Issue 16's common filters, with values taken from the fleet."""
    from django.db.models import Count

    from sessions.models import Session

    def by_frequency(field: str) -> list[str]:
        rows = (
            Session.objects.exclude(**{field: ""})
            .values(field)
            .annotate(n=Count("id"))
            .order_by("-n", field)
        )
        return [row[field] for row in rows]

    agents = by_frequency("agent")
    filters = {
        "agent": {"agent": agents[0]},
        "agent (rarest)": {"agent": agents[-1]},
        "status": {"status": "completed"},
        "channel": {"channel": by_frequency("channel")[0]},
        "model": {"model": by_frequency("model")[0]},
        "project": {"project": by_frequency("project_root")[0]},
        "state": {"state": "idle"},
        "text": {"q": "test"},
    }
    filters["combined"] = {
        name: value for values in filters.values() for name, value in values.items()
    }
    filters["combined"]["agent"] = agents[0]
    return filters


def matrix(iterations: int, page: int) -> None:
    """Time the fleet page under each filter × each sort (page ``page``)."""
    from urllib.parse import urlencode

    from django.test.utils import override_settings
    from django.utils import timezone

    from fleet.forms import SORTS
    from fleet.views.fleet import COLUMNS
    from sessions.models import Session

    client = logged_in_client()
    offered = [c.sort for c in COLUMNS if c.sort]
    keys = [*offered, *(key for key in SORTS if key not in offered)]
    sorts = [f"{p}{key}" for key in keys for p in ("-", "")]
    table = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "sessions"}
    print(f"\nfilter × sort matrix: the sessions table, page={page}, {iterations} requests each")
    print(f"{'filter':16} {'sort':26} {'matches':>8} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    worst: list[tuple[float, str, str]] = []
    with override_settings(ROOT_URLCONF=urlconf()):
        # The machine's pace in the same run (the figures are noisy on shared cores).
        figures = measure(client, "/bench/constant", iterations, {}, None)
        print(f"{'constant template':43} {figures['p50']:8.1f} {figures['p95']:8.1f}")
        for name, values in {"(none)": {}, **matrix_filters()}.items():
            fields: dict[str, Any] = {
                ("project_root" if k == "project" else k): v for k, v in values.items()
            }
            matches = Session.objects.listing(now=timezone.now(), **fields).count()
            for sort in sorts:
                query = urlencode({**values, "sort": sort, "page": page})
                figures = measure(client, f"/?{query}", iterations, table, None)
                label = sort if sort.lstrip("-") in offered else f"{sort} (URL only)"
                print(
                    f"{name:16} {label:26} {matches:8d} {figures['p50']:8.1f} "
                    f"{figures['p95']:8.1f} {figures['queries']:8d}",
                    flush=True,
                )
                worst.append((figures["p95"], name, sort))
    worst.sort(reverse=True)
    slowest = ", ".join(f"{n} × {s} {p:.0f} ms" for p, n, s in worst[:5])
    met = all(p <= MATRIX_TARGET for p, _, _ in worst)
    print(f"slowest p95: {slowest}; ≤ {MATRIX_TARGET} ms everywhere: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
