"""The session admin: edit a session through the upsert, end, compact or delete it."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from sessions import inputs, services
from sessions.admin.common import (
    BoundedPaginator,
    StoredChoicesForm,
    choice_label,
    top_values_filter,
)
from sessions.bounds import MAX_COUNT
from sessions.choices import ENDED_STATUSES, TOKEN_FIELDS, State, Status
from sessions.errors import FleetError, SessionGone, SessionNotFound
from sessions.models import DailyUsage, Session
from sessions.money import exact_usd
from sessions.querysets import SessionQuerySet

SESSION_TOTALS = (
    "turns",
    "message_count",
    "tool_call_count",
    "api_calls",
    "unpriced_calls",
    *TOKEN_FIELDS,
    "cost_usd",
    "last_seq",
)

SESSION_EDITABLE = (
    "name",
    "agent",
    "kind",
    "status",
    "state",
    "channel",
    "channel_ref",
    "room_id",
    "sender_id",
    "model",
    "project_root",
    "goal_text",
    "metadata",
    "todo",
)


class SessionAdminForm(StoredChoicesForm):
    """Checks an edit with the API's own parsers; ``fields_in`` is what the upsert gets.

    Only the changed fields are sent, so saving is the API's upsert: same
    rules, same effects (ending a session records ``ended_at``), and the
    write counts as activity (``last_active_at`` moves).
    """

    fields_in: inputs.SessionIn | None = None

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns (typed as maybe None)
        changes = {
            name: cleaned[name]
            for name in self.changed_data
            if name in SESSION_EDITABLE and name != "metadata" and name in cleaned
        }
        if "metadata" in self.changed_data and "metadata" in cleaned:
            old = self.initial.get("metadata")
            new = cleaned["metadata"]
            patch = dict.fromkeys(old, None) if isinstance(old, dict) else {}
            if isinstance(new, dict):
                patch.update(new)
            else:
                patch = new  # refused below with the API's message
            changes["metadata"] = patch
        try:
            inputs.clean_key(self.instance.key)
            self.fields_in = inputs.clean_session_fields(changes, path="")
        except FleetError as exc:
            self.add_fleet_error(exc)
            return cleaned
        status = changes.get("status", self.initial.get("status"))
        if changes.get("state") == State.RUNNING and status in ENDED_STATUSES:
            self.add_error("state", f"A {status} session cannot start a turn; set it active.")
        return cleaned


class CompactForm(forms.Form):
    summary = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        strip=False,
        help_text="Stored as a system message placed before the preserved messages.",
    )
    keep = forms.IntegerField(
        min_value=0,
        max_value=MAX_COUNT,
        initial=10,
        help_text="How many of the newest messages stay in the context view.",
    )

    def clean_summary(self) -> str:
        summary = self.cleaned_data["summary"]
        if not summary.strip():
            raise forms.ValidationError("The summary must not be empty.")
        return summary


class SessionChangeList(ChangeList):
    """The list reads no large field (metadata, todo): a page of big sessions stays small."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        rows = super().get_queryset(request, exclude_parameters)
        # Safe: this is the Session admin's list, read from Session.objects.
        return cast(SessionQuerySet, rows).without_large_fields()


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    form = SessionAdminForm
    list_display = [
        "key",
        "name",
        "agent",
        "kind_display",
        "status_display",
        "state_display",
        "channel_display",
        "model",
        "turns",
        "message_count",
        "tokens",
        "cost",
        "last_active_at",
        "messages_link",
    ]
    list_filter = [
        "status",
        "kind",
        "channel",
        "state",
        top_values_filter("agent", "agent", usage=DailyUsage),
        top_values_filter("model", "model", usage=DailyUsage),
    ]
    paginator = BoundedPaginator
    show_full_result_count = False
    search_fields = ["key", "name", "agent", "goal_text"]
    search_help_text = "Key, name, agent or goal (contains)."
    actions = ["mark_completed", "mark_cancelled", "mark_failed", "compact_sessions"]
    readonly_fields = [
        "key",
        "turn_id",
        "turn_started_at",
        "created_at",
        "last_active_at",
        "ended_at",
        "messages_link",
        *SESSION_TOTALS,
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "key",
                    "name",
                    "agent",
                    ("kind", "status", "state"),
                    ("turn_id", "turn_started_at"),
                    "model",
                    "project_root",
                    "goal_text",
                ]
            },
        ),
        (
            "Routing",
            {
                "description": "As with the API, an empty value never replaces a stored one.",
                "fields": ["channel", "channel_ref", "room_id", "sender_id"],
            },
        ),
        ("Activity", {"fields": ["created_at", "last_active_at", "ended_at"]}),
        ("Metadata and todo", {"fields": ["metadata", "todo"]}),
        (
            "Totals",
            {
                "description": "The session's spending history, kept by every write: read-only.",
                "fields": [
                    ("turns", "message_count", "messages_link", "last_seq"),
                    ("tool_call_count", "api_calls", "unpriced_calls"),
                    ("prompt_tokens", "cache_read_tokens", "cache_creation_tokens"),
                    ("completion_tokens", "reasoning_tokens"),
                    "cost_usd",
                ],
            },
        ),
    ]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SessionChangeList

    # -- columns --

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, obj: Session) -> str:
        return choice_label(obj, "kind")

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Session) -> str:
        return choice_label(obj, "status")

    @admin.display(description="state", ordering="state")
    def state_display(self, obj: Session) -> str:
        return choice_label(obj, "state")

    @admin.display(description="channel", ordering="channel")
    def channel_display(self, obj: Session) -> str:
        return choice_label(obj, "channel")

    @admin.display(description="tokens", ordering=F("prompt_tokens") + F("completion_tokens"))
    def tokens(self, obj: Session) -> int:
        return obj.total_tokens

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj: Session) -> str:
        if obj.unpriced_calls:
            return f"{exact_usd(obj.cost_usd)} + {obj.unpriced_calls} unpriced"
        return exact_usd(obj.cost_usd)

    @admin.display(description="messages")
    def messages_link(self, obj: Session) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:agent_sessions_message_changelist")
        return format_html('<a href="{}?session__id__exact={}">messages</a>', url, obj.pk)

    # -- permissions: agents create sessions through the API --

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # -- writes go through the services --

    def save_model(
        self, request: HttpRequest, obj: Session, form: SessionAdminForm, change: bool
    ) -> None:
        fields = form.fields_in or inputs.SessionIn(values={})
        if not fields:
            return
        with transaction.atomic():
            if fields.metadata is not None and not isinstance(form.initial.get("metadata"), dict):
                # Old data: metadata that is not an object cannot be merged into,
                # so the edit replaces it.
                Session.objects.filter(pk=obj.pk).update(metadata={})
            services.session_upsert(key=obj.key, fields=fields)

    def delete_model(self, request: HttpRequest, obj: Session) -> None:
        self._delete(request, [obj.key])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._delete(request, list(queryset.values_list("key", flat=True)))

    def _delete(self, request: HttpRequest, keys: list[str]) -> None:
        """Delete through the service, so each key is left a tombstone."""
        for key in keys:
            try:
                services.session_delete(key=key)
            except (SessionGone, SessionNotFound):
                continue  # deleted meanwhile: nothing left to do
            except FleetError as exc:
                self.message_user(
                    request, f"Could not delete {key!r}: {exc.message}", messages.ERROR
                )

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """Summarise instead of listing every message (a session can hold thousands).

        Messages are not deletable one by one in the admin, so Django's default
        would also refuse the deletion for lack of that permission.
        """
        sessions = list(objs)
        to_delete: list[Any] = []
        for session in sessions:
            to_delete.append(f"Session: {session.key}")
            to_delete.append(
                [f"{session.message_count} messages", "a tombstone keeps the key from reuse"]
            )
        counts = {
            "sessions": len(sessions),
            "messages": sum(session.message_count for session in sessions),
        }
        return to_delete, counts, set(), []

    # -- actions --

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Session], status: str) -> None:
        changed = unchanged = failed = 0
        for key, current in queryset.values_list("key", "status"):
            if current == status:
                unchanged += 1
                continue
            try:
                services.session_set_status(key=key, status=status)
            except FleetError as exc:
                failed += 1
                self.message_user(request, f"{key!r}: {exc.message}", messages.ERROR)
            else:
                changed += 1
        self.message_user(
            request,
            f"Marked {changed} session(s) {status}; {unchanged} already were"
            + (f"; {failed} failed." if failed else "."),
            messages.SUCCESS if not failed else messages.WARNING,
        )

    @admin.action(description="Mark selected sessions completed", permissions=["change"])
    def mark_completed(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._set_status(request, queryset, Status.COMPLETED)

    @admin.action(description="Mark selected sessions cancelled", permissions=["change"])
    def mark_cancelled(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._set_status(request, queryset, Status.CANCELLED)

    @admin.action(description="Mark selected sessions failed", permissions=["change"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._set_status(request, queryset, Status.FAILED)

    @admin.action(description="Compact selected sessions…", permissions=["change"])
    def compact_sessions(
        self, request: HttpRequest, queryset: QuerySet[Session]
    ) -> HttpResponse | None:
        """Ask for the summary and ``keep`` on a page of its own, then compact each session."""
        if "apply" in request.POST:
            form = CompactForm(request.POST)
            if form.is_valid():
                self._compact(request, queryset, **form.cleaned_data)
                return None
        else:
            form = CompactForm()
        shown = list(queryset.values_list("key", flat=True)[:20])
        total = queryset.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Compact sessions",
            "opts": self.model._meta,
            "form": form,
            "keys": shown,
            "more": max(0, total - len(shown)),
            "total": total,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agent_sessions/session/compact.html", context)

    def _compact(
        self, request: HttpRequest, queryset: QuerySet[Session], *, summary: str, keep: int
    ) -> None:
        compacted = archived = failed = 0
        for key in queryset.values_list("key", flat=True):
            try:
                count = services.session_compact(key=key, summary=summary, keep=keep)
            except FleetError as exc:
                failed += 1
                self.message_user(request, f"{key!r}: {exc.message}", messages.ERROR)
                continue
            compacted += int(count > 0)
            archived += count
        self.message_user(
            request,
            f"Compacted {compacted} session(s), archiving {archived} message(s)"
            + (f"; {failed} failed." if failed else "."),
            messages.SUCCESS if not failed else messages.WARNING,
        )
