"""The store's bookkeeping: tombstones of deleted keys, price overrides, the daily rollup."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from sessions.admin.common import top_values_filter
from sessions.models import DailyUsage, ModelPrice, Tombstone
from sessions.money import exact_usd


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
        "message_count",
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
        return exact_usd(obj.cost_usd)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DailyUsage | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DailyUsage | None = None) -> bool:
        return False
