"""The session store's choices and field-name lists.

Below everything else in ``sessions``: the querysets, models, selectors and
services read them; this module imports nothing of the project.
"""

from __future__ import annotations

from django.db import models

TOKEN_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
)


class Kind(models.TextChoices):
    INTERACTIVE = "interactive"
    AUTONOMOUS = "autonomous"
    ACP = "acp", "ACP"


class Status(models.TextChoices):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Presumed crashed: was active, no clean end was ever recorded.
    UNKNOWN = "unknown"


ENDED_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

# A message's status (free text, e.g. ``streaming``, ``complete``) for a reply
# its agent never finished: kept in the transcript, left out of the context view.
MESSAGE_INCOMPLETE = "incomplete"


class State(models.TextChoices):
    IDLE = "idle"
    RUNNING = "running"
    ERROR = "error"


class TurnOutcome(models.TextChoices):
    """How a finished turn (``Turn``) ended: back to idle (done), in error (the
    agent's, or reconcile's for a stuck turn), or unknown (its session was
    presumed dead: reconcile's stale and agent rules, ``sessions_mark_unknown``)."""

    IDLE = "idle"
    ERROR = "error"
    UNKNOWN = "unknown"


class Channel(models.TextChoices):
    CLI = "cli", "CLI"
    TUI = "tui", "TUI"
    TELEGRAM = "telegram"
    DISCORD = "discord"
    SLACK = "slack"
    ACP = "acp", "ACP"


class Role(models.TextChoices):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class CostSource(models.TextChoices):
    # The agent sent cost_usd: it always wins.
    REPORTED = "reported"
    # Priced by the server from an override or the genai-prices table.
    COMPUTED = "computed"
    # No price known for the model: shown as unpriced, never as $0.
    UNPRICED = "unpriced"
