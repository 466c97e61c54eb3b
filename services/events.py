"""Verdict changes and admin actions, published once to every listener.

Listeners (the access log, webhooks) hang on this bus instead of being woven through the
verification code, the way distribution's notification listeners decorate a repository.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger("gatekeeper.events")

EVENT_TYPES = {
    "passed": "image.passed",
    "quarantined": "image.quarantined",
    "released": "image.released",
    "requarantined": "image.requarantined",
    "release-expired": "image.requarantined",
    "new-findings": "image.new-findings",
}


@dataclass(frozen=True)
class VerdictChange:
    """One change of an image's verdict, or an admin action on it."""

    event: str
    """``passed``, ``quarantined``, ``released``, ``requarantined``, ``release-expired``,
    ``new-findings`` (re-evaluation found blocking findings, but the image stays pullable: an
    ``on_new_findings = "notify"`` policy, or an admin's release), ``rescan-requested``,
    ``warned``."""
    repository: str
    digest: str
    old_state: str | None
    new_state: str
    actor: str
    reason: str
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    policy: str | None = None
    widens: bool = False
    """It only lets more out: an image a verification found clean of findings on any blob
    became pullable. Nothing any process decided about another image or a blob can be wrong
    after it, so their cached decisions stay (``VerificationService.forget_verdict``); every
    other change drops them all."""


Listener = Callable[[VerdictChange], Awaitable[None]]


class EventBus:
    """Fan-out to listeners; a failing listener is logged and never blocks the others."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, change: VerdictChange) -> None:
        for listener in self._listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("event listener failed for %s", change.event)
