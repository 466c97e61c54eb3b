"""Prefetch: fetch an image through the registry and verify it before anyone pulls it.

The first developer to pull a large public image otherwise waits while the registry fetches it
from its remote and the gatekeeper scans it. Prefetching does both ahead of time: the manifest
is asked of the registry by tag or digest (a registry in proxy mode fetches it from its remote
and caches it), its verification is queued (the workers' reads of the config and layers make
the registry fetch and cache those too), and the first pull finds a verdict. An index is
verified with its platform images, as on a pull.

Used by ``POST /admin/api/v1/prefetch`` (``gatekeeper prefetch``) and by the scheduler, which
keeps the settings' ``[prefetch] images`` warm: each interval, every tag is resolved again (a
tag the remote moved is fetched and verified before anyone pulls it) and each image is verified
again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from config.references import ImageReference, parse_image_reference
from oci.errors import Code, OCIError
from oci.manifests import sha256_digest
from proxy.names import check_name, check_reference
from proxy.remote_failures import explain, what
from proxy.remote_status import RemoteStatus
from services.verification import VerificationService
from storage import jobs
from upstream.bodies import read_at_most
from upstream.client import Upstream, v2_path
from upstream.reads import ACCEPT

log = logging.getLogger("gatekeeper.prefetch")

REASON = "prefetched"


@dataclass(frozen=True)
class Prefetched:
    """What became of one image asked for."""

    reference: str
    """As asked (``library/alpine:3.20``)."""
    repository: str
    digest: str | None = None
    """The manifest's digest, once fetched."""
    origin: str | None = None
    """Where it comes from (a remote's name, or ``local``)."""
    queued: bool = False
    """A verification was queued (False: its verdict already stood and none was asked for)."""
    state: str | None = None
    """Its verdict's state right after: ``pending`` while it is verified."""
    error: str | None = None
    """Why it could not be fetched (the remote named, when one serves it)."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Prefetcher:
    """Fetches images through the registry and queues their verification."""

    def __init__(
        self,
        upstream: Upstream,
        verification: VerificationService,
        remotes: RemoteStatus,
        *,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        """``on_result`` hears ``queued``, ``current`` or ``failed`` for each image (metrics)."""
        self._upstream = upstream
        self._verification = verification
        self._remotes = remotes
        self._on_result = on_result or (lambda result: None)

    async def prefetch(
        self, text: str, *, identity: str, again: bool, reason: str = REASON
    ) -> Prefetched:
        """Fetch ``text`` (``REPOSITORY:TAG`` or ``REPOSITORY@DIGEST``) and queue its
        verification, unless it has a verdict already and ``again`` is false. Never raises for
        an image that cannot be had: the result says why."""
        try:
            ref = parse_image_reference(text)
            check_name(ref.repository)
            check_reference(ref.reference)
        except (ValueError, OCIError) as exc:
            self._on_result("failed")
            return Prefetched(text, text.partition(":")[0], error=_message(exc))
        try:
            digest = await self._resolve(ref)
        except OCIError as exc:
            self._on_result("failed")
            log.warning("prefetch of %s failed: %s", ref, exc.message)
            return Prefetched(text, ref.repository, error=exc.message)
        verification = self._verification
        current = await verification.verdict(ref.repository, digest)
        queued = False
        if current is None or again:
            queued = await verification.submit(ref.repository, digest, reason, identity=identity)
            current = await verification.verdict(ref.repository, digest)
        self._on_result("queued" if queued else "current")
        return Prefetched(
            text,
            ref.repository,
            digest,
            verification.origin(ref.repository, current),
            queued,
            current.state.value if current is not None else None,
        )

    async def _resolve(self, ref: ImageReference) -> str:
        """The manifest's digest, fetched through the registry (which caches it)."""
        limit = self._verification.settings.max_manifest_bytes
        async with await self._upstream.request(
            "GET",
            v2_path(ref.repository, "manifests", ref.reference),
            scopes=(f"repository:{ref.repository}:pull",),
            headers={"Accept": ACCEPT},
        ) as resp:
            status = resp.status
            body = await read_at_most(resp.content, limit + 1) if status == 200 else b""
        if status != 200:
            raise await self._failure(ref, status)
        if len(body) > limit:
            raise OCIError(Code.MANIFEST_TOO_LARGE, f"{ref}: the manifest is over {limit} bytes")
        digest = sha256_digest(body)
        if ref.by_digest and ref.reference != digest:
            raise OCIError(Code.UPSTREAM_BAD_GATEWAY, f"{ref}: the registry served {digest}")
        return digest

    async def _failure(self, ref: ImageReference, status: int) -> OCIError:
        """Why the registry did not serve it: the remote's answer when one serves it."""
        image = what(ref.repository, "manifests", ref.reference)
        remote = self._verification.serving_remote(ref.repository)
        if remote is not None:
            diagnosis = await self._remotes.diagnose(
                remote, ref.repository, "manifests", ref.reference
            )
            error = explain(diagnosis, image, status)
            if error is not None:
                return error
            if status == 404:
                return OCIError(Code.MANIFEST_UNKNOWN, f"{image}: remote {remote.name} has none")
        if status == 404:
            return OCIError(Code.MANIFEST_UNKNOWN, f"{image}: the registry has no such image")
        return OCIError(Code.UPSTREAM_BAD_GATEWAY, f"{image}: the registry answered {status}")


async def warm_up(prefetcher: Prefetcher, images: Sequence[str]) -> list[Prefetched]:
    """The scheduler's turn: every listed image fetched again and verified again."""
    done = [
        await prefetcher.prefetch(text, identity=jobs.PREFETCH, again=True, reason=WARM)
        for text in images
    ]
    failed = [item for item in done if item.error]
    log.info(
        "prefetch warm-up: %d images, %d queued for verification, %d could not be fetched",
        len(done),
        sum(item.queued for item in done),
        len(failed),
    )
    for item in failed:
        log.warning("prefetch warm-up: %s: %s", item.reference, item.error)
    return done


WARM = "kept warm ([prefetch] images)"


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, OCIError) else str(exc)
