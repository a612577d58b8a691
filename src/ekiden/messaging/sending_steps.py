"""The worker steps of email sending; importing this module also registers the outbox
handler for kind "email"."""

from __future__ import annotations

from ekiden.messaging import handler as _handler  # noqa: F401  (registers kind "email")
from ekiden.messaging.ab import ab_step
from ekiden.messaging.sends import dispatch_due as sends_step

__all__ = ["ab_step", "sends_step"]
