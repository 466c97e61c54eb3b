"""``gatekeeper enroll``: queue verification of everything already in the upstream registry.

Images pushed before the gatekeeper existed (or around it) would otherwise be verified only on
their first pull, which then waits for the verdict. Enrolling walks the upstream's catalog and
tags, resolves each tag to its digest (and each index to its platform manifests) and queues a
verification job per image; the workers of any gatekeeper sharing the database run them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from yarl import URL

from oci.grammar import is_repository_name, is_valid_digest
from oci.manifests import MANIFEST_TYPES, parse_manifest
from services.verification import VerificationService
from storage import jobs
from upstream.bodies import read_at_most
from upstream.client import Upstream, v2_path

log = logging.getLogger("gatekeeper.enroll")
ACCEPT = ", ".join(sorted(MANIFEST_TYPES))
MAX_LIST = 64 * 1024 * 1024


@dataclass
class EnrollReport:
    repositories: int = 0
    images: int = 0
    skipped: int = 0


async def _paged(upstream: Upstream, path: str, key: str, scope: str) -> AsyncIterator[str]:
    """Items of a paginated listing (catalog or tags), following ``Link`` headers."""
    next_path: str | None = path
    params: object = {"n": "1000"}
    while next_path:
        async with await upstream.request("GET", next_path, scopes=(scope,), params=params) as resp:
            if resp.status != 200:
                log.warning("%s answered %s; skipped", next_path, resp.status)
                return
            body = json.loads(await read_at_most(resp.content, MAX_LIST))
            link = resp.headers.get("Link")
        for item in body.get(key) or []:
            yield str(item)
        if link and 'rel="next"' in link:
            url = URL(link[link.find("<") + 1 : link.find(">")], encoded=True)
            next_path, params = url.raw_path, list(url.query.items())
        else:
            next_path = None


async def _digests(upstream: Upstream, repository: str, tag: str) -> list[str]:
    """The tag's digest and, for an index, its children's digests."""
    async with await upstream.request(
        "GET",
        v2_path(repository, "manifests", tag),
        scopes=(f"repository:{repository}:pull",),
        headers={"Accept": ACCEPT},
    ) as resp:
        if resp.status != 200:
            return []
        digest = resp.headers.get("Docker-Content-Digest", "")
        body = await read_at_most(resp.content, 4 * 1024 * 1024)
        content_type = resp.headers.get("Content-Type")
    if not is_valid_digest(digest):
        return []
    try:
        record = parse_manifest(repository, body, content_type, digest)
    except Exception:  # unparseable manifests are verified (and refused) on their own
        return [digest]
    return [digest, *(r.digest for r in record.refs if r.kind == "manifest")]


async def enroll(
    upstream: Upstream, verification: VerificationService, repository: str | None = None
) -> EnrollReport:
    report = EnrollReport()
    if repository is not None:
        names: AsyncIterator[str] = _single(repository)
    else:
        names = _paged(upstream, "/v2/_catalog", "repositories", "registry:catalog:*")
    async for name in names:
        if not is_repository_name(name):
            report.skipped += 1
            continue
        report.repositories += 1
        seen: set[str] = set()
        tags_path = v2_path(name, "tags", "list")
        async for tag in _paged(upstream, tags_path, "tags", f"repository:{name}:pull"):
            for digest in await _digests(upstream, name, tag):
                if digest in seen:
                    continue
                seen.add(digest)
                await verification.submit(name, digest, "enrolled", identity=jobs.ENROLL)
                report.images += 1
    return report


async def _single(name: str) -> AsyncIterator[str]:
    yield name
