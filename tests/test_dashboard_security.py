"""Dashboard security: log-in on every page, CSP, and agent text that stays inert."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from sessions import services
from sessions.models import Session

pytestmark = pytest.mark.django_db

# Not dashboard pages: the admin, the API and the OTLP receiver have their own
# authentication and static files are public. Open on purpose, each listed by name so that a new
# route is protected unless someone decides otherwise here: the log-in page,
# log-out (it only ends a session), and the ops endpoints (a public health
# check; metrics behind their own bearer token), and the browser's default icon
# path (a redirect to a public static file).
EXCLUDED_PREFIXES = ("admin/", "api/", "otlp/", "static/")
OPEN_ROUTES = {"login/", "logout/", "healthz", "metrics", "favicon.ico"}
SAMPLE_VALUES = {
    "path": "some/key",
    "session_key": "some/key",
    "str": "key",
    "slug": "key",
    "int": "1",
    "uuid": "0" * 32,
}

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
JS_LINK = "javascript:alert(1)"


def routes(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[str]:
    """Every route of the URLconf as text (``sessions/<session_key:key>/``)."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route


def concrete(route: str) -> str:
    def sample(match: re.Match[str]) -> str:
        return SAMPLE_VALUES[match.group(1) or "str"]

    return "/" + re.sub(r"<(?:(\w+):)?\w+>", sample, route).lstrip("^").rstrip("$")


def dashboard_routes() -> list[str]:
    return sorted(
        route
        for route in routes()
        if not route.startswith(EXCLUDED_PREFIXES) and route not in OPEN_ROUTES
    )


def test_the_url_enumeration_finds_the_dashboard_pages() -> None:
    found = dashboard_routes()

    assert {"", "sessions/<session_key:key>/", "search"} <= set(found)
    assert set(routes()) >= OPEN_ROUTES


@pytest.mark.parametrize("route", dashboard_routes())
def test_anonymous_visitors_are_sent_to_log_in(client: Client, route: str) -> None:
    url = concrete(route)

    response = client.get(url)

    assert response.status_code == 302, url
    assert response["Location"].startswith("/login/?next="), url


@pytest.mark.parametrize("route", dashboard_routes())
def test_anonymous_posts_change_nothing(client: Client, route: str) -> None:
    services.messages_append(key="some/key", messages=[{"role": "user", "content": "x"}])

    response = client.post(concrete(route), {"action": "delete"})

    assert response.status_code in (302, 405)
    assert Session.objects.filter(key="some/key").exists()


@pytest.mark.parametrize("route", dashboard_routes())
def test_htmx_requests_from_anonymous_visitors_load_the_login_page(
    client: Client, route: str
) -> None:
    response = client.get(
        concrete(route),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="sessions",
        HTTP_HX_CURRENT_URL="http://testserver/?status=active",
    )

    # Not a redirect htmx would follow and swap into the fragment: a page load.
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=/%3Fstatus%3Dactive"
    assert response.content == b""


def test_the_default_icon_path_leads_anyone_to_the_fleet_icon(client: Client) -> None:
    """Browsers ask /favicon.ico of a response that names no icon (JSON: /healthz)."""
    response = client.get("/favicon.ico")

    assert response.status_code == 302
    assert re.fullmatch(r"/static/fleet/favicon(\.\w+)?\.svg", response["Location"])


# --- who may see the dashboard: whoever the admin lets see sessions ----------------

# Session permissions per user; ``None`` is a superuser.
VIEWERS: dict[str, tuple[bool, list[str] | None]] = {
    "superuser": (True, None),
    "staff_with_view": (True, ["view_session"]),
    "staff_with_change": (True, ["change_session"]),
    "staff_without_permissions": (True, []),
    "staff_with_delete_only": (True, ["delete_session"]),
    "viewer_not_staff": (False, ["view_session"]),
    "user_without_permissions": (False, []),
}
SEES_THE_DASHBOARD = {"superuser", "staff_with_view", "staff_with_change", "viewer_not_staff"}


def login_as(client: Client, django_user_model: Any, who: str) -> None:
    staff, perms = VIEWERS[who]
    if perms is None:
        user = django_user_model.objects.create_superuser(who, password="pw-superuser-123")
    else:
        user = django_user_model.objects.create_user(who, password=f"pw-{who}-1", is_staff=staff)
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="agent_sessions", codename__in=perms)
        )
    client.force_login(user)


@pytest.mark.parametrize("who", VIEWERS)
@pytest.mark.parametrize("route", dashboard_routes())
def test_the_dashboard_shows_itself_to_users_who_may_view_sessions(
    client: Client, django_user_model: Any, route: str, who: str
) -> None:
    services.messages_append(key="some/key", messages=[{"role": "user", "content": "x"}])
    login_as(client, django_user_model, who)

    response = client.get(concrete(route))

    assert response.status_code == (200 if who in SEES_THE_DASHBOARD else 403)


@pytest.mark.parametrize("who", [w for w, (staff, _) in VIEWERS.items() if staff])
def test_a_staff_user_sees_the_dashboard_exactly_when_the_admin_shows_them_sessions(
    client: Client, django_user_model: Any, who: str
) -> None:
    login_as(client, django_user_model, who)

    admin = client.get("/admin/agent_sessions/session/")
    dashboard = client.get("/")

    assert admin.status_code in (200, 403)
    assert dashboard.status_code == admin.status_code


# --- content security policy --------------------------------------------------


@pytest.fixture
def pages(admin_client: Client) -> dict[str, Any]:
    services.messages_append(
        key="k1",
        messages=[{"role": "user", "content": "hello needle"}],
        session={"agent": "a"},
    )
    return {
        url: admin_client.get(url) for url in ("/", "/sessions/k1/", "/search?q=needle", "/admin/")
    }


def test_every_page_forbids_inline_script_and_framing(
    pages: dict[str, Any], client: Client
) -> None:
    pages["/login/"] = client.get("/login/")
    for url, response in pages.items():
        policy = response["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'", url
        assert directives["style-src"] == "'self'", url
        assert directives["frame-ancestors"] == "'none'", url
        assert directives["object-src"] == "'none'", url
        assert "unsafe" not in policy, url


def test_no_template_syntax_leaks_into_a_page(pages: dict[str, Any], client: Client) -> None:
    """Django's {# #} comment ends at the line's end: a comment spread over
    lines is printed as page text (it once put an htmx note above the top bar)."""
    pages["/login/"] = client.get("/login/")
    for url, response in pages.items():
        html = response.content.decode()
        for syntax in ("{#", "#}", "{%", "%}", "{{", "}}"):
            assert syntax not in html, (url, syntax)


def test_every_template_comment_closes_on_its_line() -> None:
    for template in sorted(Path(settings.BASE_DIR, "templates").rglob("*.html")):
        for number, line in enumerate(template.read_text().splitlines(), 1):
            opened = line.count("{#")
            assert opened == line.count("#}"), f"{template}:{number}: use {{% comment %}}"


def test_pages_hold_no_inline_script_style_or_handlers(pages: dict[str, Any]) -> None:
    for url, response in pages.items():
        html = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (url, tag)
        assert not re.search(r"<script\b[^>]*>[^<]", html.replace('type="application/json"', "")), (
            url
        )
        assert not re.search(r"\sstyle=", html), url
        assert not re.search(r"<style\b", html), url
        assert not re.search(r"\son[a-z]+=", html), url


def test_htmx_is_served_from_our_own_static_files(pages: dict[str, Any]) -> None:
    html = pages["/"].content.decode()

    assert re.search(r'<script src="/static/django_htmx/htmx-2(\.min)?\.js" defer>', html)
    assert "https://" not in " ".join(re.findall(r"<(?:script|link)\b[^>]*>", html))


def test_htmx_is_told_not_to_evaluate_code_or_apply_styles(pages: dict[str, Any]) -> None:
    html = pages["/"].content.decode()
    meta = re.search(r'<meta name="htmx-config" content=\'([^\']*)\'>', html)
    assert meta is not None
    config = json.loads(meta.group(1))

    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert config["includeIndicatorStyles"] is False
    # Settling would re-apply a style attribute with setAttribute: blocked by the CSP.
    assert "style" not in config["attributesToSettle"]


# --- agent text is escaped everywhere ----------------------------------------------


@pytest.fixture
def hostile() -> None:
    services.messages_append(
        key=f"key{XSS}",
        session={
            "name": f"name{XSS}",
            "agent": f"agent{XSS}",
            "model": f"model{XSS}",
            "goal_text": f"goal{XSS} {JS_LINK}",
            "project_root": f"proj{XSS}",
            "channel_ref": f"ref{XSS}",
            "room_id": f"room{XSS}",
            "sender_id": f"sender{XSS}",
            "turn_id": f"turn{XSS}",
            "todo": f"todo{XSS}",
            "metadata": {f"meta{XSS}": f"value{XSS}", "link": JS_LINK},
        },
        messages=[
            {"role": "user", "content": f"needle {XSS} [click]({JS_LINK})", "name": f"who{XSS}"},
            {
                "role": "assistant",
                "reasoning": f"thinking{XSS}",
                "model": f"msgmodel{XSS}",
                "agent_name": f"sub{XSS}",
                "tool_calls": [
                    {"id": f"id{XSS}", "name": f"tool{XSS}", "arguments": {"cmd": f"rm {XSS}"}}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "cost_usd": "0.01"},
            },
            {
                "role": "tool",
                "tool_call_id": f"id{XSS}",
                "content": f'{{"out": "{XSS}"}}',
                "metadata": {f"msgmeta{XSS}": [f"item{XSS}"]},
            },
            {"role": "assistant", "content": f"needle again {XSS}", "status": "<b>st</b>"},
        ],
    )


class ActiveContent(HTMLParser):
    """Collects what a browser would run: scripts, images, handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and not values.get("src"):
            self.found.append("inline <script>")
        if tag == "script" and "alert" in (values.get("src") or ""):
            self.found.append("agent <script src>")
        if tag in ("img", "iframe", "object", "embed"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"handler {name}")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{name}=javascript:")


def assert_inert(html: str) -> None:
    parser = ActiveContent()
    parser.feed(html)
    assert parser.found == []


def test_agent_text_is_escaped_on_the_fleet_page(admin_client: Client, hostile: None) -> None:
    html = admin_client.get("/").content.decode()

    assert "name&lt;script&gt;" in html
    # The cost chart's bar titles and legend name the message's model.
    assert re.search(r"<title>[^<]* · msgmodel&lt;script&gt;alert\(&quot;x&quot;\)", html)
    assert_inert(html)


def test_agent_text_is_escaped_on_the_session_page(admin_client: Client, hostile: None) -> None:
    from django.urls import reverse

    url = reverse("session", kwargs={"key": f"key{XSS}"})

    response = admin_client.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "todo&lt;script&gt;",
        "meta&lt;script&gt;",
        "tool&lt;script&gt;",
        "thinking&lt;",
        "msgmeta&lt;script&gt;",
    ):
        assert text in html
    assert_inert(html)


def test_agent_text_is_escaped_in_search_results(admin_client: Client, hostile: None) -> None:
    html = admin_client.get("/search?q=needle").content.decode()

    assert "<mark>needle</mark>" in html
    assert_inert(html)


def test_agent_text_is_escaped_in_fragments(admin_client: Client, hostile: None) -> None:
    live = admin_client.get("/?v=x", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="fleet-live")
    table = admin_client.get("/?v=x", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="sessions")

    assert "agent&lt;script&gt;" in live.content.decode()
    assert_inert(live.content.decode())
    assert_inert(table.content.decode())


def test_the_dashboard_never_marks_agent_text_safe() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # The two audited places that mark text safe, each escaping every value
    # first (tests/test_markup.py, the snippet tests above).
    audited = {root / "fleet/markup.py", root / "fleet/snippets.py"}
    sources = [path for path in root.glob("fleet/**/*.py") if path not in audited]
    templates = [*root.glob("templates/fleet/*.html"), root / "templates/base.html"]

    assert root / "fleet/charts.py" in sources
    for path in sources:
        code = path.read_text()
        assert "mark_safe(" not in code, path
        assert "SafeString(" not in code, path
    for path in templates:
        html = path.read_text()
        assert "|safe" not in html, path
        assert "autoescape off" not in html, path
