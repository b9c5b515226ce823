"""Forms that validate the dashboard's query strings and posts (never trusted)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import QueryDict

from sessions.choices import Channel, Kind, State, Status
from sessions.querysets import TEXT_FILTER_MIN_CHARS

SEARCH_MAX_LENGTH = 200


def _blank(label: str, choices: Any) -> list[tuple[str, str]]:
    return [("", label), *choices]


# Sort keys shown in the URL → ORM ordering (newest activity breaks ties).
SORTS = {
    "last_active": ("last_active_at",),
    "created": ("created_at",),
    "cost": ("cost_usd",),
    "tokens": ("token_total",),
    "turns": ("turns",),
    "messages": ("message_count",),
    "name": ("name", "key"),
    "agent": ("agent",),
    "model": ("model",),
    "status": ("status",),
}
DEFAULT_SORT = "-last_active"
SORT_CHOICES = [(f"{p}{key}", f"{p}{key}") for key in SORTS for p in ("-", "")]

HEALTH_CHOICES = [
    ("", "any health"),
    ("running", "running"),
    ("stuck", "stuck"),
    ("stale", "stale"),
    ("today", "started today"),
]


class FleetFilterForm(forms.Form):
    """The sessions table's filters, sort and text search, as the URL carries them."""

    q = forms.CharField(
        required=False,
        label="Text",
        max_length=SEARCH_MAX_LENGTH,
        strip=True,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "key, name or goal…", "autocomplete": "off"}
        ),
    )
    status = forms.ChoiceField(required=False, choices=_blank("any status", Status.choices))
    state = forms.ChoiceField(required=False, choices=_blank("any state", State.choices))
    health = forms.ChoiceField(required=False, choices=HEALTH_CHOICES)
    kind = forms.ChoiceField(required=False, choices=_blank("any kind", Kind.choices))
    channel = forms.ChoiceField(required=False, choices=_blank("any channel", Channel.choices))
    agent = forms.CharField(
        required=False,
        max_length=255,
        widget=forms.TextInput(attrs={"placeholder": "agent", "list": "agents"}),
    )
    model = forms.CharField(
        required=False,
        max_length=255,
        widget=forms.TextInput(attrs={"placeholder": "model", "list": "models"}),
    )
    project = forms.CharField(
        required=False, max_length=1024, widget=forms.TextInput(attrs={"placeholder": "project"})
    )
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES, widget=forms.HiddenInput)

    def clean_q(self) -> str:
        # Shorter text has no trigram to find in the index: refused (and
        # reported), not scanned for (sessions.querysets.text_rule). Checked
        # here rather than with min_length, which would also make the browser
        # hold back the filters' requests while the field is too short.
        value: str = self.cleaned_data["q"]
        if 0 < len(value) < TEXT_FILTER_MIN_CHARS:
            raise forms.ValidationError(
                f"type at least {TEXT_FILTER_MIN_CHARS} characters to filter by text."
            )
        return value

    FILTER_FIELDS = (
        "q",
        "status",
        "state",
        "health",
        "kind",
        "channel",
        "agent",
        "model",
        "project",
    )

    def valid_values(self) -> dict[str, str]:
        """The values that passed validation; a bad field is left out (and reported)."""
        self.is_valid()
        return {
            name: value
            for name, value in self.cleaned_data.items()
            if value not in (None, "") and name in self.fields
        }

    def canonical_query(self) -> QueryDict:
        """Only the valid, non-empty values, in a stable order: the URL to share."""
        values = self.valid_values()
        query = QueryDict(mutable=True)
        for name in self.fields:
            if name in values and not (name == "sort" and values[name] == DEFAULT_SORT):
                query[name] = values[name]
        return query

    @property
    def is_filtered(self) -> bool:
        values = self.valid_values()
        return any(name in values for name in self.FILTER_FIELDS)


class SearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=SEARCH_MAX_LENGTH,
        strip=True,
        label="Search messages",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "words to find…", "autocomplete": "off"}
        ),
    )

    def clean_q(self) -> str:
        value = self.cleaned_data["q"]
        if "\x00" in value:
            raise forms.ValidationError("The search must not contain NUL characters.")
        return value


class TranscriptForm(forms.Form):
    """Which part of a transcript to show; bad numbers fall back to the newest page."""

    before = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    after = forms.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    at = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    tail = forms.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    v = forms.CharField(required=False, max_length=64)

    def value(self, name: str) -> Any:
        self.is_valid()
        return self.cleaned_data.get(name)


SESSION_ACTIONS = {
    "completed": Status.COMPLETED,
    "cancelled": Status.CANCELLED,
    "failed": Status.FAILED,
}


class SessionActionForm(forms.Form):
    action = forms.ChoiceField(
        choices=[(name, name) for name in SESSION_ACTIONS] + [("delete", "delete")]
    )
