"""The dashboard in a real browser: Playwright driving Debian's Chromium.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and the
``playwright`` package; Playwright's own browser downloads are not used.
Without them the tests skip with the reason, except in CI (``CI=true``),
where that is a failure. Screenshots of the fleet and a session page, and
of every page at phone widths, are saved to ``var/screenshots/``. A test
fails on any dialog, script error or failed load (see ``_watched_page``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.signals import request_started

from sessions import services
from sessions.models import Budget, Session, Status

# Playwright's sync API runs an event loop in this thread; the ORM calls the
# tests make between browser steps are ordinary synchronous code.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path(os.environ.get("FLEET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
PASSWORD = "pw-browser-123"
WAIT_MS = 10_000

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.once]  # the browser's side


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Problems(list):
    """Dialogs, script errors, console errors and failed loads seen by a page."""


def _expected_failure(status: int, path: str) -> bool:
    # A deleted session's page answers 410 (a missing one 404) to the poll
    # still in flight when the browser leaves it.
    return status in (404, 410) and "/sessions/" in path


class _ServerFailures(logging.Handler):
    """Every 4xx/5xx the live server answers, as Django logs it (django.request).

    The browser's own requests (the icon: /favicon.ico, or the one a page
    names) are made by Chromium's browser process, which Playwright's page and
    context events never see; the server sees them all.
    """

    def __init__(self, problems: Problems) -> None:
        super().__init__(logging.WARNING)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        response = getattr(record, "response", None)
        request = getattr(record, "request", None)
        status = getattr(response, "status_code", 0)
        path = getattr(request, "path", "")
        if not _expected_failure(status, path):
            self.problems.append(f"server: {record.getMessage()}")


@pytest.fixture
def served() -> Iterator[list[str]]:
    """The paths the live server received, in order (the browser's own included)."""
    paths: list[str] = []

    def on_request(sender: Any, environ: dict[str, Any], **kwargs: Any) -> None:
        paths.append(environ.get("PATH_INFO", ""))

    request_started.connect(on_request, dispatch_uid="browser-served")
    yield paths
    request_started.disconnect(dispatch_uid="browser-served")


def _watched_page(browser: Any, base_url: str, **context_options: Any) -> Iterator[Any]:
    """A tab whose teardown fails on any dialog, script or console error, and
    any failed load: refused by the server (the browser's own icon request
    included), answered >= 400, or not completed at all."""
    context = browser.new_context(base_url=base_url, **context_options)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    problems = Problems()
    server = _ServerFailures(problems)
    django_request = logging.getLogger("django.request")
    level = django_request.level
    django_request.setLevel(logging.WARNING)
    django_request.addHandler(server)

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.type} {dialog.message}")
        dialog.dismiss()

    def on_console(message: Any) -> None:
        # Failed loads are reported with their URL by on_response instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console: {message.text}")

    def on_response(response: Any) -> None:
        path = urlsplit(response.url).path
        if response.status >= 400 and not _expected_failure(response.status, path):
            problems.append(f"HTTP {response.status}: {response.url}")

    def on_request_failed(request: Any) -> None:
        # htmx cancels its own requests (hx-sync replace/drop) and leaving a
        # page cancels the polls in flight: an abort of a script's request is
        # not a failed load. Any other failure is (a page's style, script or
        # image that did not arrive).
        aborted = request.failure == "net::ERR_ABORTED"
        if not (aborted and request.resource_type in ("xhr", "fetch")):
            problems.append(f"failed {request.resource_type}: {request.url} ({request.failure})")

    tab.on("dialog", on_dialog)
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", on_console)
    tab.on("response", on_response)
    tab.on("requestfailed", on_request_failed)
    tab.problems = problems
    try:
        yield tab
        # The browser asks for the page's icon once the page has loaded: give
        # a request the last page started the time to be answered.
        tab.wait_for_timeout(300)
        context.close()
    finally:
        django_request.removeHandler(server)
        django_request.setLevel(level)
    assert problems == []


@pytest.fixture
def page(browser: Any, live_server: Any, settings: Any) -> Iterator[Any]:
    settings.FLEET_POLL_SECONDS = 1
    yield from _watched_page(browser, live_server.url, viewport={"width": 1440, "height": 1000})


@pytest.fixture
def operator(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(
        "operator", password=PASSWORD, is_staff=True, is_superuser=True
    )


def wait_for_a_poll(page: Any) -> None:
    """Until a live poll of this page has answered and its swap (if any) has settled."""
    # Selectors, not wait_for_function: the page's CSP refuses the eval it needs.
    page.evaluate(
        "document.documentElement.removeAttribute('data-polled');"
        "document.addEventListener('htmx:afterRequest', (event) => {"
        "  if (event.detail.elt.hasAttribute('data-poll'))"
        "    document.documentElement.setAttribute('data-polled', '');"
        "})"
    )
    page.wait_for_selector("html[data-polled]", state="attached")
    page.wait_for_selector(".htmx-request, .htmx-swapping, .htmx-settling", state="detached")


def log_in(page: Any, operator: Any, next_url: str = "/") -> None:
    page.goto(next_url)
    page.wait_for_url(re.compile(r"/login/"))
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".topbar")


def add(key: str, *messages: dict[str, Any], **fields: Any) -> None:
    services.messages_append(
        key=key,
        messages=list(messages) or [{"role": "user", "content": "hello"}],
        session={"agent": "alpha", "model": "gpt-4o", "channel": "cli", **fields},
    )


def screenshot(page: Any, name: str, **options: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), **options)


# --- the fleet page -------------------------------------------------------------


def test_the_fleet_page_shows_the_totals_the_database_holds(page: Any, operator: Any) -> None:
    call_command("demo_fleet", sessions=60, messages_per_session=16, seed=7, stdout=StringIO())

    log_in(page, operator)

    stats = {
        label: page.locator(f".stat-{label} .stat-n").inner_text()
        for label in ("active", "running", "unknown")
    }
    assert stats == {
        "active": str(Session.objects.filter(status=Status.ACTIVE).count()),
        "running": str(Session.objects.running().count()),
        "unknown": str(Session.objects.filter(status=Status.UNKNOWN).count()),
    }
    assert page.locator("table.sessions tbody tr").count() == 50
    assert page.locator(".table-meta strong").inner_text() == "60"
    assert page.locator(".chart-svg rect").count() > 0
    page.wait_for_selector("[data-freshness]:not([hidden])")
    assert "updated" in page.locator("[data-freshness]").inner_text()
    page.evaluate(  # the chart's hover transitions have settled
        "Promise.all(document.getAnimations()"
        ".filter((a) => a.effect.getTiming().iterations !== Infinity).map((a) => a.finished))"
    )
    screenshot(page, "fleet.png")
    screenshot(page, "fleet-full.png", full_page=True)


def test_a_latency_period_redraws_the_panels_in_place_and_the_poll_keeps_it(
    page: Any, operator: Any
) -> None:
    add(
        "timed",
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "ok", "duration_ms": 1500},
    )
    log_in(page, operator)
    # The section loads itself after the page.
    page.wait_for_selector(".chart-title:has-text('Model call latency per day')")
    assert page.locator(".chart-title", has_text="Model call latency per day").count() == 1

    page.locator(".period-picker a", has_text="Today").click()
    page.wait_for_selector('.period-picker a[aria-current="true"]:has-text("Today")')

    assert "latency=today" in (page.locator("#fleet-latency").get_attribute("hx-get") or "")
    assert "Latency by model" in page.locator(".breakdowns.latency").inner_text()
    # Only the latency section changed: the table's address is left alone.
    assert urlsplit(page.url).query == ""
    screenshot(page, "fleet-latency-today.png")


def test_filtering_updates_the_url_and_the_url_can_be_shared(
    page: Any, operator: Any, browser: Any, live_server: Any
) -> None:
    add("done-1", status="completed")
    add("done-2", status="completed", channel="slack")
    add("running-1", state="running")
    log_in(page, operator)

    page.select_option("#id_status", "completed")
    page.wait_for_url(re.compile(r"status=completed"))
    page.wait_for_function("document.querySelectorAll('table.sessions tbody tr').length === 2")
    page.locator("table.sessions thead a", has_text="Cost").click()
    page.wait_for_url(re.compile(r"sort=-cost"))
    shared = page.url

    other = page.context.new_page()
    other.goto(shared)
    badges = other.locator("table.sessions tbody .badge").all_inner_texts()
    assert [badge.lower() for badge in badges] == ["completed", "completed"]
    assert other.locator("#id_status").input_value() == "completed"
    # A filter typed after sorting keeps the sort.
    other.fill("#id_q", "done-2")
    other.wait_for_url(re.compile(r"q=done-2"))
    assert "sort=-cost" in other.url
    other.wait_for_function("document.querySelectorAll('table.sessions tbody tr').length === 1")
    other.close()


def test_the_fleet_table_shows_a_new_session_without_reload(page: Any, operator: Any) -> None:
    add("first")
    log_in(page, operator)
    page.evaluate("window.__notReloaded = true")

    add("arrived-later", name="A brand new session")

    page.wait_for_selector("text=A brand new session")
    assert page.evaluate("window.__notReloaded") is True


def test_a_poll_never_applies_an_inline_style_the_policy_blocks(page: Any, operator: Any) -> None:
    """htmx "settles" the attributes of an element swapped in with the same id:
    it copies the old ones on, then puts the new ones back with setAttribute.
    A ``style`` attribute left by a browser extension, or by Playwright's own
    screenshot (it sets caret-color on every input through CSSOM), would then be
    applied as an inline style, which ``style-src 'self'`` blocks with a console
    error. This was a flake in CI; the config keeps ``style`` out of settling."""
    add("first")
    log_in(page, operator)
    page.evaluate(
        "document.querySelectorAll('[id]').forEach((el) => {"
        "  el.style.setProperty('caret-color', 'transparent', 'important');"
        "  el.style.removeProperty('caret-color');"
        "})"
    )
    assert page.locator("#sort-input[style]").count() == 1

    add("arrived-later", name="Swapped in after the styles")

    page.wait_for_selector("text=Swapped in after the styles")
    page.wait_for_selector(".htmx-swapping, .htmx-settling", state="detached")


def test_polling_pauses_while_the_tab_is_hidden(page: Any, operator: Any) -> None:
    add("s1")
    page.clock.install()  # the page's timers run when the test says, not on the wall clock
    log_in(page, operator)
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "v=" in request.url else None)
    with page.expect_request(lambda request: "v=" in request.url):
        page.clock.run_for(2500)
    assert polls, "the page should poll while visible"

    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    page.wait_for_selector(".htmx-request", state="detached")  # no poll in flight
    polls.clear()
    page.clock.run_for(3000)
    assert polls == []

    with page.expect_request(lambda request: "v=" in request.url):
        page.evaluate(
            "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
    assert polls, "showing the tab again polls at once"


# --- the session page -------------------------------------------------------------


def conversation(key: str) -> None:
    add(
        key,
        {"role": "user", "content": "Please fix the failing test"},
        {
            "role": "assistant",
            "reasoning": "Let me look for the test first.",
            "tool_calls": [
                {
                    "id": "call-1",
                    "name": "grep",
                    "arguments": '{"pattern": "def test_", "path": "tests/"}',
                }
            ],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "cost_usd": "0.0042"},
        },
        {
            "role": "tool",
            "tool_call_id": "call-1",
            "content": "tests/test_api.py:12: def test_upsert",
        },
        {
            "role": "assistant",
            "content": "Found it: the fixture was missing. Fixed and the suite passes.",
            "usage": {"prompt_tokens": 1400, "completion_tokens": 40, "cost_usd": "0.0031"},
        },
        name="Fix the failing test",
        goal_text="Make CI green again",
        project_root="/home/dev/fleet",
        metadata={"branch": "fix/ci", "host": "runner-3"},
        todo="- [x] find the test\n- [x] fix it\n- [ ] open the pull request",
    )


def test_a_session_opens_and_new_messages_appear_without_reload(page: Any, operator: Any) -> None:
    conversation("team/fix-ci")
    log_in(page, operator)

    page.click("text=Fix the failing test")
    page.wait_for_url(re.compile(r"/sessions/team/fix-ci/$"))
    assert page.locator(".call .tool-name").inner_text() == "grep"
    assert "tests/test_api.py:12" in page.locator(".call .call-result").inner_text()
    page.evaluate("window.__notReloaded = true")

    add("team/fix-ci", {"role": "user", "content": "Now open the pull request, please."})

    page.wait_for_selector("text=Now open the pull request, please.")
    assert page.evaluate("window.__notReloaded") is True
    assert (
        page.locator(".counts").inner_text().startswith("2 turns · ")
        or "5" in page.locator(".counts").inner_text()
    )
    page.locator("details.reasoning summary").click()
    screenshot(page, "session.png")


def test_a_poll_keeps_the_folds_the_reader_opened(page: Any, operator: Any) -> None:
    conversation("s-folds")
    log_in(page, operator, "/sessions/s-folds/")
    page.locator("details.reasoning summary").click()

    add("s-folds", {"role": "user", "content": "One more thing."})

    page.wait_for_selector("text=One more thing.")
    assert page.locator("details.reasoning").get_attribute("open") is not None


def test_mark_completed_updates_the_header_in_place(page: Any, operator: Any) -> None:
    conversation("s-complete")
    log_in(page, operator, "/sessions/s-complete/")
    page.evaluate("window.__notReloaded = true")

    page.click("button:has-text('Mark completed')")

    page.wait_for_selector("#session-summary .badge.status-completed")
    assert Session.objects.get(key="s-complete").status == Status.COMPLETED
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("button:has-text('Mark completed')").count() == 0


def test_delete_asks_first_then_returns_to_the_fleet(page: Any, operator: Any) -> None:
    conversation("s-delete")
    log_in(page, operator, "/sessions/s-delete/")

    page.click("summary:has-text('Delete')")
    page.click("button:has-text('Delete permanently')")

    page.wait_for_url(re.compile(r"/$"))
    assert "tombstoned" in page.locator(".flash").inner_text()
    assert not Session.objects.filter(key="s-delete").exists()


def test_earlier_messages_load_in_place(page: Any, operator: Any) -> None:
    add("long", *({"role": "user", "content": f"message {i}"} for i in range(1, 81)))
    log_in(page, operator, "/sessions/long/")
    assert page.locator("#m-1").count() == 0

    page.click("text=Earlier messages")

    page.wait_for_selector("#m-1")
    assert page.locator("article.msg").count() == 80


# --- search -------------------------------------------------------------------------


def test_search_finds_a_message_and_links_to_it(page: Any, operator: Any) -> None:
    add("other", {"role": "user", "content": "nothing to see"})
    add(
        "target",
        *({"role": "user", "content": f"filler {i}"} for i in range(60)),
        {"role": "assistant", "content": "The flamingo migration is done."},
        *({"role": "user", "content": f"more {i}"} for i in range(60)),
    )
    log_in(page, operator, "/search")

    page.fill("#id_q", "flamingo")

    page.wait_for_selector(".snippet mark")
    assert page.locator(".snippet mark").first.inner_text() == "flamingo"
    page.wait_for_url(re.compile(r"/search\?q=flamingo"))
    screenshot(page, "search.png")
    page.click("a.hit")
    page.wait_for_url(re.compile(r"/sessions/target/\?at=61#m-61"))
    target = page.locator("#m-61")
    assert "flamingo" in target.inner_text()
    assert "target" in (target.get_attribute("class") or "")


# --- security -----------------------------------------------------------------------


XSS = (
    "<script>window.__xss = 1; alert('xss')</script>"
    "<img src=x onerror=\"window.__xss = 1; alert('img')\">"
    "<a href=\"javascript:alert('link')\">click me</a>"
    "<svg onload=alert(1)></svg>"
)


def test_an_xss_payload_never_executes(page: Any, operator: Any) -> None:
    add(
        "xss-session",
        {"role": "user", "content": f"needle {XSS}", "name": f"name{XSS}"},
        {
            "role": "assistant",
            "reasoning": XSS,
            "tool_calls": [{"id": "c1", "name": f"tool{XSS}", "arguments": {"html": XSS}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        },
        {"role": "tool", "tool_call_id": "c1", "content": XSS},
        name=f"name {XSS}",
        agent=f"agent{XSS}"[:255],
        model=f"model{XSS}"[:255],
        goal_text=XSS,
        metadata={"note": XSS},
        todo=XSS,
    )
    log_in(page, operator)
    wait_for_a_poll(page)  # at least one poll re-render
    page.click("table.sessions tbody a")
    page.wait_for_url(re.compile(r"/sessions/"))
    page.locator("details").evaluate_all("(all) => all.forEach((d) => { d.open = true; })")
    wait_for_a_poll(page)
    page.goto("/search?q=needle")
    page.wait_for_selector(".snippet mark")

    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0
    # The payload is shown as text; the fixture fails the test on any dialog or error.
    assert "<script>" in page.locator(".snippet").first.inner_text()


def test_the_admin_works_under_the_content_security_policy(page: Any, operator: Any) -> None:
    add("admin-check")
    log_in(page, operator)
    session = Session.objects.get(key="admin-check")

    page.goto("/admin/")
    page.wait_for_selector("#content")
    page.goto(f"/admin/agent_sessions/session/{session.pk}/change/")
    page.wait_for_selector("#content form")
    page.goto("/admin/auth/user/add/")
    page.wait_for_selector("#content form")


def wait_for_icon(page: Any, served: list[str], since: int) -> str:
    """The icon path the browser asked for after request number ``since``."""
    page.wait_for_function("document.readyState === 'complete'")
    for _ in range(WAIT_MS // 100):
        icons = [p for p in served[since:] if p == "/favicon.ico" or "favicon" in p]
        if icons:
            return icons[0]
        page.wait_for_timeout(100)
    raise AssertionError(f"the browser asked for no icon; it asked for {served[since:]}")


def test_the_browser_gets_its_icon_from_every_kind_of_page(
    page: Any, operator: Any, served: list[str]
) -> None:
    """Chromium asks for an icon once a page has loaded: the one the page
    names, else /favicon.ico. The fixture fails the test if the server
    refuses either."""
    page.goto("/admin/login/")  # the first page of a fresh browser: no icon cached yet
    page.wait_for_selector("#login-form")

    assert "fleet/favicon" in page.locator("link[rel=icon]").get_attribute("href")
    assert "/static/fleet/favicon" in wait_for_icon(page, served, 0)

    since = len(served)
    page.goto("/healthz")  # a JSON answer names no icon
    assert wait_for_icon(page, served, since) == "/favicon.ico"
    assert "/favicon.ico" not in served[:since]


# --- a phone --------------------------------------------------------------------------

PHONE_WIDTHS = (360, 390, 430)
LONG_WORD = "build-artifact-" + "0123456789abcdef" * 8


def assert_fits(page: Any, width: int, name: str) -> None:
    """Screenshots of the page, then: it does not scroll sideways itself."""
    page.wait_for_timeout(200)
    widths = page.evaluate(
        "({scroll: document.documentElement.scrollWidth, inner: innerWidth,"
        "  client: document.documentElement.clientWidth})"
    )
    screenshot(page, f"phone-{width}-{name}.png")
    screenshot(page, f"phone-{width}-{name}-full.png", full_page=True)
    # The elements that stick out, to say what to fix.
    widths["wide"] = page.evaluate(
        "(width) => [...document.querySelectorAll('body *')]"
        "  .filter((el) => el.getBoundingClientRect().right > width + 1)"
        "  .filter((el) => !el.parentElement.closest('.table-wrap, .scroll-x'))"
        "  .slice(0, 8)"
        "  .map((el) => `${el.tagName.toLowerCase()}.${el.classList[0] || ''}"
        " ${Math.round(el.getBoundingClientRect().right)}`)",
        width,
    )
    # On a mobile viewport an overflowing page zooms out (innerWidth grows):
    # the layout width must stay the phone's.
    assert widths["inner"] == width, f"{name}: zoomed out to {widths}"
    assert widths["scroll"] <= widths["inner"], f"{name} overflows: {widths}"
    assert widths["scroll"] <= widths["client"], f"{name} overflows: {widths}"


@pytest.fixture(params=PHONE_WIDTHS, ids=lambda width: f"{width}px")
def phone(request: Any, browser: Any, live_server: Any, settings: Any) -> Iterator[Any]:
    settings.FLEET_POLL_SECONDS = 1
    yield from _watched_page(
        browser,
        live_server.url,
        viewport={"width": request.param, "height": 800},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )


def test_every_page_fits_a_phone(phone: Any, operator: Any) -> None:
    width = phone.viewport_size["width"]
    call_command("demo_fleet", sessions=30, messages_per_session=8, seed=7, stdout=StringIO())
    # Budget bars with long names and scopes, one exceeded.
    # (A name at its bound: 100 characters, no space to break at after "fleet ".)
    name = f"fleet {LONG_WORD}"[: Budget._meta.get_field("name").max_length]
    Budget.objects.create(name=name, period="month", amount_usd=Decimal("0.01"))
    Budget.objects.create(
        name="koda daily", agent="koda", project=f"/src/{LONG_WORD}", amount_usd=Decimal(100)
    )
    conversation("team/fix-ci")
    add(
        "team/fix-ci",
        {"role": "user", "content": f"The flamingo build left {LONG_WORD} in /tmp/{LONG_WORD}"},
        {"role": "tool", "tool_call_id": "call-2", "content": f"{LONG_WORD} " * 3},
    )

    phone.goto("/")
    phone.wait_for_url(re.compile(r"/login/"))
    assert_fits(phone, width, "login")
    log_in(phone, operator)
    assert_fits(phone, width, "fleet")
    phone.locator("#filters").evaluate("(el) => el.scrollIntoView()")
    screenshot(phone, f"phone-{width}-sessions.png")

    phone.goto("/sessions/team/fix-ci/")
    phone.locator("details.reasoning summary").click()
    assert_fits(phone, width, "session")
    phone.locator(".transcript-head").evaluate("(el) => el.scrollIntoView()")
    screenshot(phone, f"phone-{width}-transcript.png")
    transcript = phone.locator(".msg .text").first
    assert float(transcript.evaluate("(el) => parseFloat(getComputedStyle(el).fontSize)")) >= 13

    phone.goto("/search?q=flamingo")
    phone.wait_for_selector(".snippet mark")
    assert_fits(phone, width, "search")
