"""The verification service outside ``gatekeeper serve``, for commands that verify on their own
(``gatekeeper enroll --verify-now``, ``gatekeeper verify``): the same database, upstream client
and service the server builds, opened and closed in the same order, without the HTTP side."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from config.settings import Settings
from services.events import EventBus
from services.policybook import load_book
from services.verification import VerificationService
from storage.db import create_engine, sessionmaker, upgrade
from upstream.client import Upstream, make_client_session, make_token_client
from verifiers.base import Verifier


@contextlib.asynccontextmanager
async def verification_service(
    settings: Settings, make_verifiers: Callable[[Any], list[Verifier]]
) -> AsyncIterator[VerificationService]:
    """``make_verifiers`` receives the session maker (for the stores some verifiers need)."""
    engine = create_engine(settings.database_url)
    session = make_client_session(settings)
    tokens = make_token_client(settings)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        upstream = Upstream(settings, session, tokens)
        policies = await load_book(db, settings.policies)
        yield VerificationService(settings, db, upstream, make_verifiers(db), EventBus(), policies)
    finally:
        await tokens.aclose()
        await session.close()
        await engine.dispose()
