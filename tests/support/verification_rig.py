"""A real verification service over a fake registry (its blobs in a fake object store) and a
real database, for unit tests of what a verification decides and publishes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestServer

from config.policy import Policy
from config.settings import load_settings
from services.events import EventBus, VerdictChange
from services.policybook import load_book
from services.verification import VerificationService
from storage import verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.layer_cache import DbLayerCache
from tests.fakes.objectstore import PASSWORD, USERNAME, FakeStore, RedirectingRegistry
from tests.support.ocihttp import OCI_MANIFEST, digest_of
from upstream.client import Upstream, make_client_session, make_token_client
from verifiers.lifecycle import State
from verifiers.registry import build_verifiers


@dataclass
class Rig:
    service: VerificationService
    db: Any
    policies: list[Policy]
    changes: list[VerdictChange] = field(default_factory=list)

    async def state(self, repository: str, digest: str) -> State:
        async with self.db() as session:
            found = await verdicts.get(session, repository, digest)
        assert found is not None
        return found.state


@contextlib.asynccontextmanager
async def verification_rig(
    database_url: str,
    images: list[tuple[bytes, list[bytes], bytes]],
    env: dict[str, str],
) -> AsyncIterator[Rig]:
    """``images``: (config, layers, manifest) each, served under the manifest's digest;
    ``env``: settings (policies, verifiers) on top of the registry's and the database's. The
    service's policies are those in the database when it starts (as a process's are)."""
    blobs = {digest_of(b): b for config, layers, _ in images for b in (config, *layers)}
    store = FakeStore(blobs=blobs)
    store_server = TestServer(store.app())
    await store_server.start_server()
    registry = RedirectingRegistry(str(store_server.make_url("/")))
    for _, _, manifest in images:
        registry.manifests[digest_of(manifest)] = (OCI_MANIFEST, manifest)
    registry_server = TestServer(registry.app())
    await registry_server.start_server()
    settings = load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": str(registry_server.make_url("/")),
            "GATEKEEPER_DATABASE_URL": database_url,
            "GATEKEEPER_UPSTREAM_USERNAME": USERNAME,
            "GATEKEEPER_UPSTREAM_PASSWORD": PASSWORD,
            **env,
        }
    )
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    db = sessionmaker(engine)
    session, tokens = make_client_session(settings), make_token_client(settings)
    bus = EventBus()
    service = VerificationService(
        settings,
        db,
        Upstream(settings, session, tokens),
        build_verifiers(settings.verifiers, DbLayerCache(db)),
        bus,
        await load_book(db, settings.policies),
    )
    rig = Rig(service, db, settings.policies)

    async def listen(change: VerdictChange) -> None:
        rig.changes.append(change)

    bus.subscribe(listen)
    try:
        yield rig
    finally:
        await service.close()
        await tokens.aclose()
        await session.close()
        await engine.dispose()
        await registry_server.close()
        await store_server.close()
