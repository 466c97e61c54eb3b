"""Makes a verification summary when an image's verdict becomes ``passed`` or ``released``
(``FAILED`` when such an image is quarantined again) and pushes it to the upstream as a
referrer of the image.

The summary is signed and stored when the verdict changes (a listener on the event bus), then
pushed by a loop that retries with back-off, so an upstream that is down delays it and loses
nothing. Once pushed, the referrer manifest is indexed and verified like any manifest pushed
through the gatekeeper: it is an artifact of a type the policy lets through
(``artifact_types``, which lists Sigstore bundles by default) and pullable only while the image
it is about is. The gatekeeper's own summary gets no exemption from the gate, so nothing a
hostile pusher could imitate (a media type, an annotation) opens the gate either.

Summaries are made for images and indexes only, never for artifacts (signatures, SBOMs, the
summaries themselves), and only for images of the registry itself (``local`` origin): one
fetched from a remote is served by a pull-through registry, which takes no pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from importlib import metadata
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from yarl import URL

from config.policy import Policy
from config.remotes import LOCAL
from config.settings import Settings
from oci.manifests import OCI_MANIFEST, parse_manifest
from proxy.attest import summaries
from proxy.attest.dsse import Signer
from services.events import VerdictChange
from services.verification import VerificationService
from storage import attestations, manifests, verdicts
from storage.attestations import Attestation
from storage.timeutil import now
from upstream.client import Upstream, v2_path

log = logging.getLogger("gatekeeper.attest")

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
PASSING = {"passed", "released"}
FAILING = {"quarantined", "requarantined", "release-expired"}
IDENTITY = "gatekeeper"
"""Who pushed a summary, in the access log and the verification queue."""
LEASE = timedelta(seconds=60)


def _version() -> str:
    """The installed package's version (the summaries' ``verifier.version``)."""
    try:
        return metadata.version("registry-gatekeeper")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


class PushError(Exception):
    """The upstream refused part of a summary's push; the message says which."""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


PolicyFor = Callable[[str, str], Policy]
"""The policy in force for (repository, origin)."""


class SummaryRecorder:
    """Signs a summary when a verdict changes and stores it for the pusher: a listener on the
    event bus, in ``gatekeeper serve`` and in the commands that change verdicts beside it
    (``quarantine`` without a server, ``advisories import``), whose summaries the serving
    gatekeeper's loop then pushes."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[Any],
        signer: Signer,
        policy_for: PolicyFor,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._signer = signer
        self._policy_for = policy_for
        self._wake = wake

    @property
    def verifier_id(self) -> str:
        configured = self._settings.attestations.verifier_id
        if configured:
            return configured
        if self._settings.public_url is not None:
            return str(self._settings.public_url).rstrip("/") + "/gatekeeper"
        return "urn:registry-gatekeeper"

    def resource(self, repository: str) -> str:
        """The image's name as clients pull it: the public host (or the listen address)."""
        url = self._settings.public_url
        if url is not None and url.host:
            host = url.host + (f":{url.port}" if url.port not in (None, 80, 443) else "")
        else:
            host = f"{self._settings.host}:{self._settings.port}"
        return f"{host}/{repository}"

    async def listener(self, change: VerdictChange) -> None:
        if change.event in PASSING:
            result = summaries.PASSED
        elif change.event in FAILING:
            result = summaries.FAILED
        else:
            return
        async with self._db() as session, session.begin():
            row = await manifests.get_manifest(session, change.repository, change.digest)
            if row is not None and row.content_kind not in (None, "image", "index"):
                return  # an artifact (a signature, an SBOM, a summary) is not summarized
            if await attestations.is_summary(session, change.repository, change.digest):
                return
            earlier = await attestations.of_image(session, change.repository, change.digest)
            if result == summaries.FAILED and not any(
                a.result == summaries.PASSED for a in earlier
            ):
                return  # never vouched for: nothing to take back
            verdict = await verdicts.get(session, change.repository, change.digest)
            if verdict is None or verdict.origin != LOCAL:
                # An image from a remote is served by a pull-through registry, which takes
                # no pushes: its summary could never be stored beside it.
                return
            found = await verdicts.findings(session, change.repository, change.digest)
            policy = self._policy_for(change.repository, verdict.origin)
            summary = summaries.Summary(
                change.repository, change.digest, result, change.event, change.time
            )
            doc = summaries.statement(
                summary,
                verdict,
                found,
                policy if policy.name == verdict.policy else None,
                verifier_id=self.verifier_id,
                version=VERSION,
                resource=self.resource(change.repository),
            )
            bundle = json.dumps(summaries.bundle(self._signer, doc), separators=(",", ":"))
            await attestations.add(session, change.repository, change.digest, result, bundle, now())
        if self._wake is not None:
            self._wake()


class SummaryPublisher:
    """Pushes the stored summaries that are due beside their images, retrying with back-off."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[Any],
        upstream: Upstream,
        verification: VerificationService,
    ) -> None:
        self._settings = settings
        self._db = db
        self._upstream = upstream
        self._verification = verification
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="summary-publisher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 5.0)
            self._wakeup.clear()
            try:
                await self.push_due()
            except Exception as exc:  # the loop must outlive a database outage
                log.error("verification summaries: %s", exc)

    async def push_due(self) -> int:
        """Push every summary that is due; returns how many landed."""
        async with self._db() as session, session.begin():
            due = await attestations.claim_due(session, now(), LEASE)
        landed = 0
        for item in due:
            try:
                await self._push(item)
            except Exception as exc:  # any failure is retried, with back-off
                await self._failed(item, exc)
                continue
            landed += 1
        return landed

    async def _failed(self, item: Attestation, exc: Exception) -> None:
        cfg = self._settings.attestations
        attempts = item.attempts + 1
        retry_at = None
        if attempts < cfg.max_attempts:
            delay = min(cfg.retry_base_seconds * 2 ** (attempts - 1), 3600.0)
            retry_at = now() + timedelta(seconds=delay)
        log.warning(
            "verification summary of %s@%s not pushed (attempt %d): %s",
            item.repository,
            item.digest,
            attempts,
            exc,
        )
        async with self._db() as session, session.begin():
            await attestations.failed_attempt(session, item.id, str(exc), retry_at)

    async def _push(self, item: Attestation) -> str:
        name = item.repository
        async with self._db() as session:
            subject = await manifests.get_manifest(session, name, item.digest)
        if subject is None:
            raise PushError("the image is not in the gatekeeper's index")
        layer = item.bundle.encode()
        await self._put_blob(name, EMPTY)
        await self._put_blob(name, layer)
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": summaries.BUNDLE_TYPE,
            "config": {"mediaType": EMPTY_TYPE, "digest": _digest(EMPTY), "size": len(EMPTY)},
            "layers": [
                {"mediaType": summaries.BUNDLE_TYPE, "digest": _digest(layer), "size": len(layer)}
            ],
            "subject": {
                "mediaType": subject.media_type,
                "digest": item.digest,
                "size": subject.size,
            },
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": summaries.PREDICATE_TYPE,
                "org.opencontainers.image.created": item.created_at.isoformat(),
            },
        }
        body = json.dumps(doc, separators=(",", ":")).encode()
        digest = _digest(body)
        async with await self._upstream.request(
            "PUT",
            v2_path(name, "manifests", digest),
            scopes=(f"repository:{name}:pull,push",),
            headers={"Content-Type": OCI_MANIFEST},
            data=body,
        ) as resp:
            if resp.status != 201:
                raise PushError(f"the registry answered {resp.status} to the manifest")
        record = parse_manifest(name, body, OCI_MANIFEST, digest)
        async with self._db() as session, session.begin():
            await manifests.record_manifest(session, record, None)
            await attestations.pushed(session, item.id, digest)
        await self._verification.submit(
            name, digest, "the gatekeeper's verification summary", identity=IDENTITY, pushed=True
        )
        log.info(
            "verification summary %s of %s@%s pushed as %s", item.result, name, item.digest, digest
        )
        return digest

    async def _put_blob(self, name: str, data: bytes) -> None:
        digest = _digest(data)
        scope = (f"repository:{name}:pull,push",)
        async with await self._upstream.request(
            "HEAD", v2_path(name, "blobs", digest), scopes=scope
        ) as resp:
            if resp.status == 200:
                return
        async with await self._upstream.request(
            "POST", v2_path(name, "blobs", "uploads") + "/", scopes=scope
        ) as resp:
            location = resp.headers.get("Location")
            if resp.status != 202 or not location:
                raise PushError(f"the registry answered {resp.status} to a blob upload")
        target = URL(location)
        path = target.raw_path + (f"?{target.raw_query_string}" if target.raw_query_string else "")
        async with await self._upstream.request(
            "PUT",
            path,
            scopes=scope,
            params={"digest": digest},
            headers={"Content-Type": "application/octet-stream"},
            data=data,
        ) as resp:
            if resp.status != 201:
                raise PushError(f"the registry answered {resp.status} to blob {digest}")


async def recorder_for(
    settings: Settings, db: async_sessionmaker[Any], policy_for: PolicyFor
) -> SummaryRecorder | None:
    """The recorder of a command that changes verdicts beside the serving gatekeeper (which
    pushes what it records), or None when summaries are off or there is no key to sign with."""
    from proxy.attest import keys as attest_keys

    if not settings.attestations.summaries:
        return None
    keys = await attest_keys.load(settings, db, create=True)
    if keys.signer is None:
        return None
    return SummaryRecorder(settings, db, keys.signer, policy_for)
