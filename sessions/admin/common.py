"""Shared pieces of the admin: money and choice display, list filters, forms.

Rows imported or written long ago may hold values the domain no longer
accepts (an unknown status, metadata that is a list): these helpers show them
as they are, marked invalid, and never crash on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Count, Field, Model, Q, QuerySet, Sum
from django.http import HttpRequest
from django.utils.functional import cached_property

from sessions.errors import FleetError
from sessions.selectors import count_bounded

TOP_VALUES = 50
# The admin's big lists (sessions, messages) count their rows up to this many.
ADMIN_COUNT_CAP = 10_000


class BoundedPaginator(Paginator):
    """A paginator that counts at most ``ADMIN_COUNT_CAP`` rows.

    Django's admin counts the whole (filtered) list for its pages: over
    millions of messages that is seconds a page view (issue 16's 1 M-session
    store: 1.4 s for the message list). Past the cap the list reads as
    ``ADMIN_COUNT_CAP`` rows (its pages reach that far; filter or search to
    narrow it), like the dashboard's table (``selectors.count_bounded``).
    """

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):  # the admin always pages a queryset
            return len(rows)
        return count_bounded(rows, ADMIN_COUNT_CAP)[0]


def choice_label(obj: Model, name: str) -> str:
    """The label of a choice field; a stored value outside the choices is shown, marked."""
    value = getattr(obj, name)
    if value in (None, ""):
        return "—"
    field = obj._meta.get_field(name)
    choices = field.flatchoices if isinstance(field, Field) else []
    labels = {str(key): label for key, label in choices}
    if value in labels:
        return str(labels[value])
    return f"{value} (invalid)"


def top_values_filter(
    field: str, title: str, *, usage: type[Model] | None = None
) -> type[admin.SimpleListFilter]:
    """A list filter offering the most used values of ``field``.

    Agent and model names are open-ended: listing every distinct value would
    grow without bound, so the filter offers the ``TOP_VALUES`` most used (one
    grouped query per page) plus the value currently chosen. ``usage``: read
    them from this rollup (most messages first) instead of grouping the listed
    table, whose rows can be millions (the sessions': 0.6-0.75 s a filter at
    1 M sessions); a value with no usage yet is left out of the choices.
    """

    class TopValuesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
            source = usage or model_admin.model
            uses = Sum("message_count") if usage else Count("pk")
            rows = (
                source._default_manager.exclude(**{field: ""})
                .values_list(field)
                .annotate(uses=uses)
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
            # Normalised by ChoiceField (a list, or an iterator adding the blank
            # choice); the stubs' type also admits what it normalises from.
            if not isinstance(field, forms.TypedChoiceField) or not isinstance(
                field.choices, Iterable
            ):
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
