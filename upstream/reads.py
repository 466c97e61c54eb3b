"""Reading the upstream for verification: blobs, other manifests, other repositories.

Every read is checked (digests of manifests, size limits) and streamed: a verifier never gets a
whole blob, and a pusher's manifest cannot make the gatekeeper buffer more than its limits.
Blob reads follow the upstream's redirects to object storage (``upstream.redirects``: streamed,
with the same timeouts, never with the upstream's credentials).
These implement the read interfaces of ``verifiers.base`` (``BlobOpener``, ``ManifestFetcher``,
``RepositoryOpener``) over the one upstream connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import ClientResponse
from sqlalchemy.ext.asyncio import async_sessionmaker

from oci.errors import OCIError
from oci.grammar import is_repository_name
from oci.manifests import MANIFEST_TYPES, sha256_digest
from storage import manifests
from upstream.bodies import read_at_most
from upstream.client import Upstream, v2_path
from upstream.redirects import from_store, read
from verifiers.base import (
    Descriptor,
    FetchedManifest,
    RepositoryView,
    SourceUnavailable,
    VerifierError,
)

CHUNK = 256 * 1024
ACCEPT = ", ".join(sorted(MANIFEST_TYPES))


class UpstreamBlobs:
    """Streams blobs of one repository from the upstream (``verifiers.base.BlobOpener``)."""

    def __init__(self, upstream: Upstream, repository: str) -> None:
        self._upstream = upstream
        self._repository = repository

    @property
    def repository(self) -> str:
        return self._repository

    @contextlib.asynccontextmanager
    async def open(self, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        resp = await self._get(digest, {})
        try:
            if resp.status != 200:
                raise self._refused(digest, resp)
            yield _chunks(digest, resp)
        finally:
            resp.release()

    async def head(self, digest: str, size: int) -> bytes:
        """The first ``size`` bytes of a blob (a ``Range`` request; a registry or store that
        ignores it is read only that far)."""
        resp = await self._get(digest, {"Range": f"bytes=0-{size - 1}"})
        try:
            if resp.status not in (200, 206):
                raise self._refused(digest, resp)
            return await read_at_most(resp.content, size)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceUnavailable(f"blob {digest}: reading it failed ({_name(exc)})") from exc
        finally:
            resp.release()

    async def _get(self, digest: str, headers: dict[str, str]) -> ClientResponse:
        """The blob's answer, redirects to object storage followed; failing to get one at all
        says nothing of the blob (``SourceUnavailable``)."""
        path = v2_path(self._repository, "blobs", digest)
        scopes = (f"repository:{self._repository}:pull",)
        try:
            return await read(self._upstream, "GET", path, scopes=scopes, headers=headers)
        except OCIError as exc:
            raise SourceUnavailable(f"blob {digest}: {exc.message}") from exc

    def _refused(self, digest: str, resp: ClientResponse) -> VerifierError:
        """A server error or throttling is the source's trouble; anything else (not found,
        forbidden) is an answer about this blob."""
        who = "object storage" if from_store(self._upstream.base, resp) else "upstream"
        text = f"blob {digest}: {who} answered {resp.status}"
        if resp.status >= 500 or resp.status == 429:
            return SourceUnavailable(text)
        return VerifierError(text)

    async def read(self, digest: str, limit: int) -> bytes | None:
        """A whole blob of at most ``limit`` bytes, or None if it is larger."""
        parts: list[bytes] = []
        size = 0
        async with self.open(digest) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    return None
                parts.append(chunk)
        return b"".join(parts)


async def _chunks(digest: str, resp: ClientResponse) -> AsyncIterator[bytes]:
    """The body in chunks; a transfer that breaks off is the source's failure."""
    try:
        async for chunk in resp.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SourceUnavailable(f"blob {digest}: reading it failed ({_name(exc)})") from exc


def _name(exc: BaseException) -> str:
    return exc.__class__.__name__


class UpstreamManifests:
    """Fetches other manifests of one repository (``verifiers.base.ManifestFetcher``)."""

    def __init__(self, upstream: Upstream, repository: str, limit: int) -> None:
        self._upstream = upstream
        self._repository = repository
        self._limit = limit

    async def fetch(self, reference: str) -> FetchedManifest | None:
        async with await self._upstream.request(
            "GET",
            v2_path(self._repository, "manifests", reference),
            scopes=(f"repository:{self._repository}:pull",),
            headers={"Accept": ACCEPT},
        ) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise VerifierError(f"manifest {reference}: upstream answered {resp.status}")
            body = await read_at_most(resp.content, self._limit + 1)
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if len(body) > self._limit:
            raise VerifierError(f"manifest {reference} exceeds {self._limit} bytes")
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise VerifierError(f"upstream manifest {reference} does not match its digest")
        return FetchedManifest(digest=digest, media_type=media_type, body=body)


class UpstreamRepositories:
    """Opens other repositories of the upstream for verifiers (``verifiers.base.
    RepositoryOpener``): cosign's signature repository. Reads go through :class:`UpstreamBlobs`
    and :class:`UpstreamManifests`, so they keep the digest checks and the manifest size limit;
    the referrers come from the gatekeeper's own index of that repository, never a client's."""

    def __init__(self, upstream: Upstream, db: async_sessionmaker[Any], limit: int) -> None:
        self._upstream = upstream
        self._db = db
        self._limit = limit

    async def open(self, repository: str, subject: str) -> RepositoryView:
        if not is_repository_name(repository):
            raise VerifierError(f"{repository[:300]!r} is not a valid repository name")
        async with self._db() as session:
            found = await manifests.referrers(session, repository, subject, None)
        return RepositoryView(
            name=repository,
            manifests=UpstreamManifests(self._upstream, repository, self._limit),
            blobs=UpstreamBlobs(self._upstream, repository),
            referrers=tuple(Descriptor(r.media_type, r.digest, r.size) for r in found),
            referrer_types=tuple(r.artifact_type for r in found),
        )
