"""The admin for alerts: rules, channels (with "send test"), incidents, the delivery log.

Validation is the models' (``AlertRule.clean``, ``AlertChannel.clean``): a
filter value nothing can match, a threshold missing or given to the wrong
kind, a URL that is not http(s), a short secret is a form error.

A channel's URL and secret are credentials (a Slack or Discord webhook URL
is its own token): the form never shows them back (write-only fields, blank
keeps the current value); lists and pages show the scheme and host and the
secret's last four characters. Incidents and deliveries are read-only: the
``alerts`` command writes them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts.engine import send_test
from alerts.models import AlertChannel, AlertRule, Delivery, Incident, mask_secret


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "filters_text", "cooldown_seconds"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "agent", "model"]
    filter_horizontal = ["channels"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "channels"]}),
        (
            "Threshold",
            {
                "fields": [
                    "threshold_seconds",
                    "threshold_usd_per_hour",
                    "per",
                    "threshold_ms",
                    "window_days",
                    "min_count",
                ]
            },
        ),
        ("Filters (blank: every value)", {"fields": ["agent", "channel", "model"]}),
        ("Storms", {"fields": ["cooldown_seconds"]}),
    ]

    @admin.display(description="filters")
    def filters_text(self, obj: AlertRule) -> str:
        return ", ".join(f"{name} {value}" for name, value in obj.filters.items()) or "—"


class AlertChannelForm(forms.ModelForm):
    url = forms.CharField(
        required=False,
        max_length=2048,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="webhook kinds: the URL (never shown again; blank keeps the current one)",
    )
    secret = forms.CharField(
        required=False,
        max_length=255,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="JSON webhook: the HMAC signing key, 16 characters or more "
        "(never shown again; blank keeps the current one)",
    )

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "enabled", "url", "secret", "email_to"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None
        for name in ("url", "secret"):
            if not data.get(name) and self.instance.pk:
                data[name] = getattr(self.instance, name)
        return data


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "kind", "enabled", "target", "secret_hint"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["target", "secret_hint"]
    actions = ["send_test_action"]

    @admin.display(description="target")
    def target(self, obj: AlertChannel) -> str:
        return obj.target or "—"

    @admin.display(description="secret")
    def secret_hint(self, obj: AlertChannel) -> str:
        return mask_secret(obj.secret) or "—"

    @admin.action(description="Send a test notification")
    def send_test_action(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset:
            delivery = send_test(channel)
            if delivery.status == Delivery.Status.SENT:
                self.message_user(request, f"{channel.name}: test sent.", messages.SUCCESS)
            else:
                self.message_user(request, f"{channel.name}: {delivery.last_error}", messages.ERROR)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fk_name = "incident"
    fields = readonly_fields = (
        "event", "channel", "status", "attempts", "next_attempt_at", "sent_at", "last_error",
    )  # fmt: skip
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Incident)
class IncidentAdmin(_ReadOnly):
    list_display = ["rule", "subject", "state", "opened_at", "resolved_at"]
    list_filter = ["rule", ("resolved_at", admin.EmptyFieldListFilter)]
    list_select_related = ["rule"]
    search_fields = ["subject"]
    inlines = [DeliveryInline]


@admin.register(Delivery)
class DeliveryAdmin(_ReadOnly):
    list_display = [
        "created_at", "event", "channel", "about", "status", "attempts", "next_attempt_at",
        "last_error",
    ]  # fmt: skip
    list_filter = ["status", "event", "channel"]
    list_select_related = ["channel", "incident__rule", "rule"]

    @admin.display(description="about")
    def about(self, obj: Delivery) -> str:
        if obj.incident is not None:
            return f"{obj.incident.rule.name}: {obj.incident.subject}"
        if obj.rule is not None:
            return f"{obj.rule.name}: {len(obj.subjects)} subjects (grouped)"
        return "test"
