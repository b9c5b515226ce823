"""The message admin: browse messages, correct one (totals move by the difference)."""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.text import Truncator

from sessions import inputs, selectors, services
from sessions.admin.common import BoundedPaginator, StoredChoicesForm, choice_label
from sessions.choices import TOKEN_FIELDS, CostSource, Role
from sessions.errors import FleetError
from sessions.fields import message_fields
from sessions.models import Message
from sessions.money import exact_usd

PREVIEW_CHARS = 80


class MessageAdminForm(StoredChoicesForm):
    """Checks an edited message with the API's rules before the correction is saved."""

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns (typed as maybe None)
        stored_calls = self.initial.get("tool_calls")
        if "tool_calls" in self.changed_data and "tool_calls" in cleaned:
            try:
                cleaned["tool_calls"] = inputs.clean_tool_calls(cleaned["tool_calls"], "tool_calls")
            except FleetError as exc:
                self.add_fleet_error(exc)
        elif stored_calls is not None and not isinstance(stored_calls, list | str | dict):
            # Totals count len(tool_calls): a stored number cannot be corrected from.
            self.add_error("tool_calls", "The stored value is not a list: enter a list, e.g. [].")
        if "metadata" in self.changed_data and "metadata" in cleaned:
            # An emptied box is an empty object (the column holds no NULL).
            metadata = cleaned["metadata"]
            try:
                cleaned["metadata"] = (
                    {} if metadata is None else inputs.clean_json_object(metadata, "metadata")
                )
            except FleetError as exc:
                self.add_fleet_error(exc)
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

    def _post_clean(self) -> None:
        """Try the correction (rolled back) so a total it would take past its bound
        (``sessions.bounds``) is a form error, not a failure on save."""
        # django-stubs omits BaseModelForm._post_clean (Django's own hook, called by full_clean).
        super()._post_clean()  # type: ignore[misc]
        if self.errors or self.instance.pk is None:
            return
        trial = copy.copy(self.instance)
        try:
            with transaction.atomic():
                services.message_save_correction(message=trial)
                raise _TrialOnly
        except _TrialOnly:
            pass
        except FleetError as exc:
            self.add_fleet_error(exc)


class _TrialOnly(Exception):
    """Rolls back the correction ``MessageAdminForm`` tries before saving."""


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


# django-stubs types the options as a private TypedDict; Any keeps this override compatible.
Fieldsets = list[tuple[Any, Any]]


def laid_out(fieldsets: Fieldsets) -> list[str]:
    """The field names ``fieldsets`` show, in order (rows are tuples of names)."""
    return [
        name
        for _, options in fieldsets
        for row in options["fields"]
        for name in (row if isinstance(row, tuple) else (row,))
    ]


def with_every_field(fieldsets: Fieldsets) -> Fieldsets:
    """``fieldsets``, the first one ending with any message field they leave out."""
    shown = set(laid_out(fieldsets))
    rest = [field.name for field in message_fields() if not field.primary_key]
    rest = [name for name in rest if name not in shown]
    (title, options), *others = fieldsets
    return [(title, {**options, "fields": [*options["fields"], *rest]}), *others]


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
    paginator = BoundedPaginator
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
                    "Saving a change moves the session's totals, the daily usage and the "
                    "latency rollup by the difference. Messages cannot be deleted here "
                    "(counts and seq would break): use compaction, clear, or manage.py purge. "
                    "Editing tokens does not reprice a computed cost: run manage.py reprice, "
                    "or enter a reported cost."
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
                    "metadata",
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
                    ("duration_ms", "time_to_first_token_ms"),
                ]
            },
        ),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Message | None = None) -> Fieldsets:
        # A new message field shows in the change form without a change here.
        return with_every_field(list(super().get_fieldsets(request, obj)))

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
        return exact_usd(obj.cost_usd)

    @admin.display(description="archived", boolean=True, ordering="compacted_at")
    def archived(self, obj: Message) -> bool:
        return obj.compacted_at is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list, headed by what compaction archived (``GET /api/v1/compaction-stats``)."""
        context = {**(extra_context or {}), "compaction_stats": selectors.compaction_stats()}
        return super().changelist_view(request, context)

    def save_model(
        self, request: HttpRequest, obj: Message, form: MessageAdminForm, change: bool
    ) -> None:
        services.message_save_correction(message=obj)
