"""Who may see the dashboard and act on sessions; log-in and log-out.

The dashboard asks for exactly the permissions the admin asks for: seeing it
needs ``agent_sessions.view_session`` or ``change_session`` (the admin shows
sessions to either), changing a session's status ``change_session``, deleting
it ``delete_session``. Being staff grants nothing by itself (a superuser has
every permission). Anonymous visitors are sent to the log-in page; a logged-in
user without the permission gets a 403 page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import LoginView, redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from fleet.views import HtmxHttpRequest
from fleet.views.errors import domain_error_page
from sessions.errors import FleetError

VIEW_PERMISSION = "agent_sessions.view_session"
CHANGE_PERMISSION = "agent_sessions.change_session"
DELETE_PERMISSION = "agent_sessions.delete_session"


def can_view(user: Any) -> bool:
    # As ModelAdmin.has_view_permission: the change permission implies viewing.
    return user.is_active and (user.has_perm(VIEW_PERMISSION) or user.has_perm(CHANGE_PERMISSION))


def can_change(user: Any) -> bool:
    return user.is_active and user.has_perm(CHANGE_PERMISSION)


def can_delete(user: Any) -> bool:
    return user.is_active and user.has_perm(DELETE_PERMISSION)


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "fleet/forbidden.html", {"reason": reason}, status=403)


def dashboard_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Log-in required; then a permission to view sessions (``can_view``).

    A domain error escaping the view (``FleetError``: bad input, unknown or
    deleted session, conflict) becomes a 4xx page (``fleet/views/errors.py``).

    An htmx request (a poll after the log-in expired) is told to load the
    log-in page as a whole page, instead of having it swapped into a fragment.
    """

    @wraps(view)
    def wrapped(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            if request.htmx:
                page = request.htmx.current_url_abs_path or reverse("fleet")
                return HttpResponseClientRedirect(redirect_to_login(page)["Location"])
            return redirect_to_login(request.get_full_path())
        if not can_view(request.user):
            return forbidden(request, "Your account may not see the fleet dashboard.")
        try:
            return view(request, *args, **kwargs)
        except FleetError as error:
            return domain_error_page(request, error)

    return wrapped


class FleetLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


login_view = FleetLoginView.as_view()


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """django-axes' answer to a locked-out log-in (dashboard or admin): 429 with the wait."""
    minutes = settings.FLEET_LOGIN_COOLOFF_MINUTES
    response = render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """Log out (POST only, CSRF-checked) and return to the log-in page with a note."""
    logout(request)
    messages.info(request, "You are logged out.")
    return HttpResponseRedirect(reverse("login"))
