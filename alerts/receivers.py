"""After reconcile marks sessions, the crash and stuck rules run at once.

``sessions`` never imports ``alerts`` (the layering); reconcile sends
``sessions.ops.reconcile.reconciled`` and this runs the rules of the kinds it
can have changed (``engine.RECONCILE_KINDS``), delivering what they open.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from alerts.engine import RECONCILE_KINDS, run_alerts
from sessions.ops.reconcile import reconciled


@receiver(reconciled, dispatch_uid="alerts-after-reconcile")
def after_reconcile(sender: Any, **kwargs: Any) -> None:
    run_alerts(kwargs.get("now"), kinds=RECONCILE_KINDS)
