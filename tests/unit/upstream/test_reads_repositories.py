"""Another repository as a verifier reads it (cosign's signature repository): the same digest
checks and size limits as the image's own, and referrers from the gatekeeper's own index."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from config.settings import load_settings
from oci.manifests import parse_manifest
from storage.db import create_engine, sessionmaker, upgrade
from storage.manifests import record_manifest
from tests.support.database import Database
from tests.support.ocihttp import OCI_MANIFEST, digest_of
from upstream.client import Upstream, make_client_session, make_token_client
from upstream.reads import UpstreamRepositories
from verifiers.base import RepositoryView, VerifierError

SUBJECT = "sha256:" + "5" * 64
LIMIT = 2048


@dataclass
class RecordingUpstream:
    """Serves manifests and blobs by (repository, reference); records every path asked for."""

    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self.version)
        app.router.add_get("/v2/{name:.+?}/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/{name:.+?}/blobs/{digest}", self.blob)
        return app

    async def version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path)
        body = self.manifests.get((request.match_info["name"], request.match_info["ref"]))
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, headers={"Content-Type": OCI_MANIFEST})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path)
        body = self.blobs.get((request.match_info["name"], request.match_info["digest"]))
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body)


def referrer(repository: str, subject: str, note: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": digest_of(b"{}"),
                "size": 2,
            },
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
            "annotations": {"note": note, "repository": repository},
        }
    ).encode()


@dataclass
class Rig:
    fake: RecordingUpstream
    opener: UpstreamRepositories
    db: Any


@pytest.fixture
async def rig(fresh_db: Database) -> AsyncIterator[Rig]:
    fake = RecordingUpstream()
    server = TestServer(fake.app())
    await server.start_server()
    settings = load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": str(server.make_url("/")),
            "GATEKEEPER_DATABASE_URL": fresh_db.url,
        }
    )
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    db = sessionmaker(engine)
    session, tokens = make_client_session(settings), make_token_client(settings)
    yield Rig(fake, UpstreamRepositories(Upstream(settings, session, tokens), db, LIMIT), db)
    await tokens.aclose()
    await session.close()
    await engine.dispose()
    await server.close()


async def index(rig: Rig, repository: str, body: bytes) -> str:
    async with rig.db() as session, session.begin():
        await record_manifest(session, parse_manifest(repository, body, OCI_MANIFEST), None)
    return digest_of(body)


async def test_referrers_are_those_of_the_subject_in_that_repository(rig: Rig) -> None:
    wanted = await index(rig, "sigs/app", referrer("sigs/app", SUBJECT, "wanted"))
    await index(rig, "sigs/app", referrer("sigs/app", "sha256:" + "6" * 64, "other subject"))
    await index(rig, "app/x", referrer("app/x", SUBJECT, "the image's own repository"))
    view = await rig.opener.open("sigs/app", SUBJECT)
    assert isinstance(view, RepositoryView) and view.name == "sigs/app"
    assert [d.digest for d in view.referrers] == [wanted]
    assert view.referrer_types == ("application/vnd.dev.sigstore.bundle.v0.3+json",)


async def test_manifests_and_blobs_come_from_that_repository_with_digest_checks(
    rig: Rig,
) -> None:
    good = b'{"schemaVersion":2}'
    rig.fake.manifests[("sigs/app", "sha256-" + "5" * 64 + ".sig")] = good
    rig.fake.manifests[("sigs/app", digest_of(good))] = good
    rig.fake.manifests[("sigs/app", digest_of(b"what was asked for"))] = good
    rig.fake.manifests[("sigs/app", "huge")] = b" " * (LIMIT + 1)
    rig.fake.blobs[("sigs/app", digest_of(b"payload"))] = b"payload"
    view = await rig.opener.open("sigs/app", SUBJECT)
    fetched = await view.manifests.fetch("sha256-" + "5" * 64 + ".sig")
    assert fetched is not None and fetched.body == good and fetched.digest == digest_of(good)
    assert await view.manifests.fetch(digest_of(good)) is not None
    assert await view.manifests.fetch("sha256-" + "7" * 64 + ".sig") is None
    with pytest.raises(VerifierError, match="does not match its digest"):
        await view.manifests.fetch(digest_of(b"what was asked for"))
    with pytest.raises(VerifierError, match=f"exceeds {LIMIT} bytes"):
        await view.manifests.fetch("huge")
    async with view.blobs.open(digest_of(b"payload")) as chunks:
        assert b"".join([c async for c in chunks]) == b"payload"
    assert all(path.startswith("/v2/sigs/app/") for path in rig.fake.seen)


@pytest.mark.parametrize("name", ["Sigs/App", "sigs/../app", "sigs//app", "", "a" * 256])
async def test_an_invalid_repository_name_is_refused_before_any_request(
    rig: Rig, name: str
) -> None:
    with pytest.raises(VerifierError, match="not a valid repository name"):
        await rig.opener.open(name, SUBJECT)
    assert rig.fake.seen == []
