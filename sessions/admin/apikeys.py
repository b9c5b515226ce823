"""The admin for API keys: make one (shown once), scope it, see when each was used, revoke."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.html import format_html

from sessions.errors import InvalidInput
from sessions.models import ApiKey
from sessions.scopes import clean_agents

SCOPE_FIELDS = ["name", "agents", "read_only"]


class ApiKeyForm(forms.ModelForm):
    """The key's name and scope; the agents as one name per line."""

    agents = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One agent name per line. The key reads and writes only these agents' "
        "sessions (anything else answers 403). Empty: every agent.",
    )

    class Meta:
        model = ApiKey
        fields = SCOPE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        agents = self.instance.agents if self.instance.pk else []
        if isinstance(agents, list):
            self.initial["agents"] = "\n".join(str(agent) for agent in agents)

    def clean_agents(self) -> list[str]:
        try:
            return clean_agents(self.cleaned_data["agents"].splitlines())
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = (
        "name",
        "prefix",
        "scope",
        "created_at",
        "last_used_at",
        "revoked_at",
        "is_live",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "read_only")
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke_keys",)

    @admin.display(boolean=True, description="live")
    def is_live(self, obj: ApiKey) -> bool:
        return obj.revoked_at is None

    @admin.display(description="scope")
    def scope(self, obj: ApiKey) -> str:
        return obj.scope.describe()

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return tuple(SCOPE_FIELDS)
        return (*SCOPE_FIELDS, *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm, change: bool) -> None:
        if change:
            obj.save(update_fields=SCOPE_FIELDS)
            return
        key, token = ApiKey.generate(name=obj.name, agents=obj.agents, read_only=obj.read_only)
        # The admin goes on with the form's instance (log entry, redirect).
        obj.pk, obj.prefix, obj.hashed_key, obj.created_at = (
            key.pk,
            key.prefix,
            key.hashed_key,
            key.created_at,
        )
        obj._state.adding = False
        obj._state.db = key._state.db
        self.message_user(
            request,
            format_html(
                "API key {} created: <code>{}</code> — copy it now, it is shown this once "
                "and stored only as a hash.",
                key.name,
                token,
            ),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(key.revoke() for key in queryset)
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
