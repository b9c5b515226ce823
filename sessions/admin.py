"""The Django admin: look at and correct the session store.

Every write here goes through ``sessions.services`` so totals, ``message_count``,
the daily rollup and tombstones stay right: session edits are upserts, message
edits are corrections that move totals by the difference, deleting a session
leaves its tombstone. Sessions and messages are not added here (agents write
them through the API), and messages are not deleted one by one (that would
leave gaps and wrong counts; use compaction, clear or ``manage.py purge``).

Rows imported or written long ago may hold values the domain no longer
accepts (an unknown status, metadata that is a list): lists and change pages
show them as they are, marked invalid, and never crash on them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.db.models import Count, F, Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from sessions import inputs, services
from sessions.errors import FleetError, SessionGone, SessionNotFound
from sessions.models import (
    ENDED_STATUSES,
    TOKEN_FIELDS,
    CostSource,
    DailyUsage,
    Message,
    ModelPrice,
    Role,
    Session,
    State,
    Status,
    Tombstone,
)

PREVIEW_CHARS = 80
TOP_VALUES = 50
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


# --- display helpers -----------------------------------------------------------


def usd(value: Decimal | None) -> str:
    """``$0.012345``: every significant digit, at least two decimals, never a float."""
    if value is None:
        return "—"
    text = f"{value.normalize():f}"
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def choice_label(obj: Model, name: str) -> str:
    """The label of a choice field; a stored value outside the choices is shown, marked."""
    value = getattr(obj, name)
    if value in (None, ""):
        return "—"
    labels = {str(key): label for key, label in obj._meta.get_field(name).flatchoices}
    if value in labels:
        return str(labels[value])
    return f"{value} (invalid)"


def top_values_filter(field: str, title: str) -> type[admin.SimpleListFilter]:
    """A list filter offering the most used values of ``field``.

    Agent and model names are open-ended: listing every distinct value would
    grow without bound, so the filter offers the ``TOP_VALUES`` most used (one
    grouped query per page) plus the value currently chosen.
    """

    class TopValuesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
            rows = (
                model_admin.model._default_manager.exclude(**{field: ""})
                .values_list(field)
                .annotate(uses=Count("pk"))
                .order_by("-uses", field)[:TOP_VALUES]
            )
            values = [value for value, _ in rows]
            chosen = self.value()
            if chosen and chosen not in values:
                values.append(chosen)
            return [(value, value) for value in values]

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            if self.value():
                return queryset.filter(**{field: self.value()})
            return queryset

        def get_facet_counts(self, pk_attname: str, filtered_qs: QuerySet) -> dict[str, Count]:
            # One conditional count per value in a single scan, not a subquery each.
            return {
                f"{index}__c": Count(pk_attname, filter=Q(**{field: value}))
                for index, (value, _) in enumerate(self.lookup_choices)
            }

    TopValuesFilter.title = title
    TopValuesFilter.__name__ = f"Top{field.title()}Filter"
    return TopValuesFilter


class StoredChoicesForm(forms.ModelForm):
    """Keeps a stored value that is not a valid choice visible instead of silently replaced.

    A select without the stored value would show (and save) its first option;
    here the value is offered, labelled invalid, and saving it is refused by
    the model's choices check until another value is chosen.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if not isinstance(field, forms.TypedChoiceField):
                continue
            value = self.initial.get(name)
            known = {str(key) for key, _ in field.choices}
            if isinstance(value, str) and value and value not in known:
                field.choices = [
                    *field.choices,
                    (value, f"{value} (stored value, not valid: choose another)"),
                ]

    def add_fleet_error(self, error: FleetError) -> None:
        name = (error.field or "").split(".")[0].split("[")[0]
        self.add_error(name if name in self.fields else None, error.message)


# --- sessions ----------------------------------------------------------------------


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
        cleaned = super().clean()
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
        max_value=inputs.MAX_COUNT,
        initial=10,
        help_text="How many of the newest messages stay in the context view.",
    )

    def clean_summary(self) -> str:
        summary = self.cleaned_data["summary"]
        if not summary.strip():
            raise forms.ValidationError("The summary must not be empty.")
        return summary


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
        top_values_filter("agent", "agent"),
        top_values_filter("model", "model"),
    ]
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
            return f"{usd(obj.cost_usd)} + {obj.unpriced_calls} unpriced"
        return usd(obj.cost_usd)

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


# --- messages ----------------------------------------------------------------------


class MessageAdminForm(StoredChoicesForm):
    """Checks an edited message with the API's rules before the correction is saved."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        stored_calls = self.initial.get("tool_calls")
        if "tool_calls" in self.changed_data and "tool_calls" in cleaned:
            try:
                cleaned["tool_calls"] = inputs.clean_tool_calls(cleaned["tool_calls"], "tool_calls")
            except FleetError as exc:
                self.add_fleet_error(exc)
        elif stored_calls is not None and not isinstance(stored_calls, list | str | dict):
            # Totals count len(tool_calls): a stored number cannot be corrected from.
            self.add_error("tool_calls", "The stored value is not a list: enter a list, e.g. [].")
        if cleaned.get("role") == Role.TOOL and not cleaned.get("tool_call_id"):
            self.add_error("tool_call_id", "A tool message must say which call it answers.")
        cost = cleaned.get("cost_usd")
        source = cleaned.get("cost_source")
        if cost is not None and cost < 0:
            self.add_error("cost_usd", "Must not be negative.")
        has_tokens = any(cleaned.get(name) for name in TOKEN_FIELDS)
        if not source and (has_tokens or cost is not None):
            self.add_error(
                "cost_source", "Usage needs a cost source: reported, computed or unpriced."
            )
        if source == CostSource.UNPRICED and cost is not None:
            self.add_error(
                "cost_usd", "An unpriced message has no cost: clear it, or choose reported."
            )
        return cleaned


class ArchivedFilter(admin.SimpleListFilter):
    title = "archived"
    parameter_name = "archived"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Archived (compacted)"), ("no", "In context")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(compacted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(compacted_at__isnull=True)
        return queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    form = MessageAdminForm
    list_display = [
        "session_key",
        "seq",
        "role_display",
        "agent_name",
        "preview",
        "tokens",
        "cost",
        "cost_source",
        "archived",
        "created_at",
    ]
    list_display_links = ["session_key", "seq"]
    list_filter = ["role", ArchivedFilter, "cost_source"]
    # A contains-scan of every message: slow on a large store, and still useful.
    search_fields = ["content"]
    search_help_text = "Message content (contains)."
    list_select_related = ["session"]
    # Counting every message ("N total", filter counts) is a full scan on a big table.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ["session"]
    # Served by the (session, seq) unique index, filtered or not.
    ordering = ["session_id", "seq"]
    # created_at is read-only: the admin's split date/time widget would drop
    # its microseconds on every save.
    readonly_fields = ["session", "seq", "message_id", "is_summary", "created_at", "compacted_at"]
    fieldsets = [
        (
            None,
            {
                "description": (
                    "Saving a change moves the session's totals and the daily usage by the "
                    "difference. Messages cannot be deleted here (counts and seq would break): "
                    "use compaction, clear, or manage.py purge. Editing tokens does not reprice "
                    "a computed cost: run manage.py reprice, or enter a reported cost."
                ),
                "fields": [
                    ("session", "seq", "message_id"),
                    ("role", "is_summary"),
                    "content",
                    ("name", "agent_name"),
                    "tool_calls",
                    "tool_call_id",
                    "reasoning",
                    ("model", "provider_response_id", "status"),
                    ("created_at", "compacted_at"),
                ],
            },
        ),
        (
            "Usage",
            {
                "fields": [
                    ("prompt_tokens", "cache_read_tokens", "cache_creation_tokens"),
                    ("completion_tokens", "reasoning_tokens"),
                    ("cost_usd", "cost_source"),
                ]
            },
        ),
    ]

    @admin.display(description="session")
    def session_key(self, obj: Message) -> str:
        return obj.session.key

    @admin.display(description="role", ordering="role")
    def role_display(self, obj: Message) -> str:
        return choice_label(obj, "role")

    @admin.display(description="content")
    def preview(self, obj: Message) -> str:
        # Returned as plain text: the admin escapes it (agent text is untrusted).
        if obj.content is None:
            return "—"
        return Truncator(" ".join(obj.content.split())).chars(PREVIEW_CHARS)

    @admin.display(description="tokens")
    def tokens(self, obj: Message) -> int:
        return obj.total_tokens

    @admin.display(description="cost")
    def cost(self, obj: Message) -> str:
        if obj.cost_source == CostSource.UNPRICED:
            return "unpriced"
        return usd(obj.cost_usd)

    @admin.display(description="archived", boolean=True, ordering="compacted_at")
    def archived(self, obj: Message) -> bool:
        return obj.compacted_at is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: Message, form: MessageAdminForm, change: bool
    ) -> None:
        services.message_save_correction(message=obj)


# --- tombstones, prices, rollups ------------------------------------------------------


@admin.register(Tombstone)
class TombstoneAdmin(admin.ModelAdmin):
    """Deleted keys. Deleting a tombstone lets its key be used again."""

    list_display = ["key", "deleted_at"]
    search_fields = ["key"]
    date_hierarchy = "deleted_at"
    readonly_fields = ["key", "deleted_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Tombstone | None = None) -> bool:
        return False


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Price overrides. Stored costs change only when ``manage.py reprice`` runs."""

    list_display = [
        "model_pattern",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "valid_from",
        "note",
    ]
    search_fields = ["model_pattern", "note"]
    list_filter = ["valid_from"]


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    """The daily rollup: kept by ingest, corrections and purge, so it is read-only here."""

    list_display = [
        "day",
        "agent",
        "model",
        "channel",
        "sessions_started",
        "messages",
        "turns",
        "api_calls",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "unpriced_calls",
    ]
    list_filter = [
        "channel",
        top_values_filter("agent", "agent"),
        top_values_filter("model", "model"),
    ]
    date_hierarchy = "day"
    show_full_result_count = False

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj: DailyUsage) -> str:
        return usd(obj.cost_usd)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DailyUsage | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DailyUsage | None = None) -> bool:
        return False


from sessions import admin_apikeys  # noqa: E402,F401
