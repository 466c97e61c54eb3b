"""The long-lived services a request handler may use, behind one typed application key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from config.settings import Settings
from proxy.audit import AuditWriter
from proxy.metrics import Metrics
from proxy.presence import Presence
from proxy.remote_status import RemoteStatus
from services.events import EventBus
from services.live_policies import LivePolicies
from services.verification import VerificationService
from upstream.client import Upstream


@dataclass
class Services:
    """Everything created once per process by the app's cleanup context."""

    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[Any]
    upstream: Upstream
    audit: AuditWriter
    metrics: Metrics
    bus: EventBus
    verification: VerificationService
    policies: LivePolicies
    """The policies in force: ``match(repository, origin)``, never ``settings.policies``
    directly (that would miss the waivers admins made at run time)."""
    remotes: RemoteStatus
    """Asks a remote why the registry could not fetch from it (``proxy.remote_status``)."""
    presence: Presence
    """This replica among the others: what it holds (upload sessions) is let go when it is
    gone."""


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    # config_dict also finds the services from a sub-application (the admin API).
    return request.config_dict[SERVICES]
