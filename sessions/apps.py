from __future__ import annotations

from django.apps import AppConfig


class SessionsConfig(AppConfig):
    # "sessions" collides with django.contrib.sessions, which the admin needs.
    name = "sessions"
    label = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"
