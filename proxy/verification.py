"""The verification service: persisted jobs in, verdicts and events out.

Request handlers only ``submit`` (mark pending + enqueue) and read verdicts; workers claim jobs
with leases, load the image from the upstream, run the verifier pipeline, apply the matching
policy and store the decision. A crash leaves the lease to expire and the job runs again; a
verifier that fails is an ``error`` outcome the policy fails closed on, not a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import match_policy
from config.settings import Settings
from proxy.errors import Code, OCIError
from proxy.events import EventBus, VerdictChange
from proxy.forward import read_at_most
from proxy.names import MAX_NAME_LENGTH, NAME_RE
from proxy.oci import IMAGE_CONFIGS, INDEXES, MANIFEST_TYPES, parse_manifest, sha256_digest
from proxy.upstream import Upstream, v2_path
from storage import jobs, manifests, verdicts
from storage.db import DATABASE_ERRORS
from storage.verdicts import DecisionRecord, FindingRecord, VerdictView
from verifiers.base import (
    Descriptor,
    FetchedManifest,
    Image,
    RepositoryView,
    Verifier,
    VerifierError,
)
from verifiers.pipeline import Outcome, run_pipeline
from verifiers.policy import decide

log = logging.getLogger("gatekeeper.verification")

MAX_CONFIG_BYTES = 4 * 1024 * 1024
CHUNK = 256 * 1024
ACCEPT = ", ".join(sorted(MANIFEST_TYPES))


class ImageGone(Exception):
    """The upstream no longer has the manifest; there is nothing to verify."""


class UpstreamBlobs:
    """Streams blobs of one repository from the upstream (``verifiers.base.BlobOpener``)."""

    def __init__(self, upstream: Upstream, repository: str) -> None:
        self._upstream = upstream
        self._repository = repository

    @contextlib.asynccontextmanager
    async def open(self, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        path = v2_path(self._repository, "blobs", digest)
        resp = await self._upstream.request(
            "GET", path, scopes=(f"repository:{self._repository}:pull",)
        )
        try:
            if resp.status != 200:
                raise VerifierError(f"blob {digest}: upstream answered {resp.status}")
            yield resp.content.iter_chunked(CHUNK)
        finally:
            resp.release()


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
        if len(repository) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(repository):
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


async def _read_json_blob(blobs: UpstreamBlobs, digest: str) -> Any:
    parts: list[bytes] = []
    size = 0
    async with blobs.open(digest) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                return None
            parts.append(chunk)
    try:
        return json.loads(b"".join(parts))
    except ValueError:
        return None


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "verifier": outcome.verifier,
        "version": outcome.version,
        "status": outcome.status,
        "detail": outcome.detail,
        "findings": len(outcome.findings),
        "duration_ms": outcome.duration_ms,
    }


class VerificationService:
    """Owns the worker tasks of this process; several processes may share one database."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[Any],
        upstream: Upstream,
        verifiers: list[Verifier],
        bus: EventBus,
    ) -> None:
        self.settings = settings
        self.db = db
        self.upstream = upstream
        self.verifiers = verifiers
        self.bus = bus
        self.owner = f"gk-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._verdicts: dict[tuple[str, str], tuple[VerdictView, float]] = {}
        bus.subscribe(self.forget_verdict)
        self._tasks: list[asyncio.Task[None]] = []
        cfg = settings.verification
        self._lease = timedelta(seconds=cfg.lease_seconds)
        self._timeouts = {
            name: v.timeout_seconds for name, v in settings.verifiers.items() if v.enabled
        }

    # -- requests ---------------------------------------------------------------------------

    async def submit(self, repository: str, digest: str, reason: str, *, identity: str) -> None:
        """Mark the image pending (if it has no verdict yet) and queue a verification caused by
        ``identity`` (the pusher, or a named cause in ``storage.jobs``): workers are shared
        fairly between identities, so whoever floods the queue waits for their own jobs."""
        async with self.db() as session, session.begin():
            await verdicts.ensure_pending(session, repository, digest, "gatekeeper", reason)
            await jobs.enqueue(session, "verify", repository, digest, reason, identity=identity)
        self._wake.set()

    async def expedite(self, repository: str, digest: str) -> None:
        """A pull is about to wait for this image's verdict: its queued job is claimed before
        the rest of the queue (``storage.jobs.claim`` says how far ahead)."""
        async with self.db() as session, session.begin():
            await jobs.expedite(session, repository, digest)

    async def verdict(
        self, repository: str, digest: str, *, cached: bool = False
    ) -> VerdictView | None:
        """The stored verdict. ``cached`` (the pull gate) may reuse a pullable verdict read
        less than ``verdict_cache_seconds`` ago; expiry of a release is still checked by the
        caller at the moment of use, and anything not pullable is always read afresh."""
        key = (repository, digest)
        loop_time = asyncio.get_running_loop().time()
        if cached:
            hit = self._verdicts.get(key)
            if hit is not None and hit[1] > loop_time:
                return hit[0]
        async with self.db() as session:
            found = await verdicts.get(session, repository, digest)
        ttl = self.settings.verification.verdict_cache_seconds
        if ttl > 0 and found is not None and found.pullable():
            if len(self._verdicts) >= 10_000:
                self._verdicts.clear()
            self._verdicts[key] = (found, loop_time + ttl)
        else:
            self._verdicts.pop(key, None)
        return found

    async def forget_verdict(self, change: VerdictChange) -> None:
        """Bus listener: a verdict changed here, so no pull may see the old one."""
        self._verdicts.pop((change.repository, change.digest), None)

    async def wait_for_verdict(
        self, repository: str, digest: str, timeout: float
    ) -> VerdictView | None:
        """Poll until the image leaves ``pending`` or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            found = await self.verdict(repository, digest)
            if found is not None and found.state != "pending":
                return found
            if loop.time() >= deadline:
                return found
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
            delay = min(delay * 1.5, 0.5)

    # -- workers ----------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.settings.verification.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"verify-worker-{n}"))
        if self.settings.verification.workers:
            self._tasks.append(asyncio.create_task(self._sweeper(), name="release-sweeper"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def drain(self) -> int:
        """Run queued jobs in this task until none is claimable (``gatekeeper enroll
        --verify-now``, tests); returns how many ran."""
        cfg = self.settings.verification
        ran = 0
        while True:
            async with self.db() as session, session.begin():
                job = await jobs.claim(session, self.owner, self._lease, cfg.max_attempts)
            if job is None:
                return ran
            await self._run_job(job)
            ran += 1

    async def _worker(self) -> None:
        cfg = self.settings.verification
        while True:
            try:
                async with self.db() as session, session.begin():
                    job = await jobs.claim(session, self.owner, self._lease, cfg.max_attempts)
            except DATABASE_ERRORS as exc:
                log.error("cannot claim jobs: %s", exc)
                job = None
            except Exception:
                # A worker that dies silently would leave every image pending forever.
                log.exception("unexpected error while claiming a job")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), cfg.poll_seconds)
                continue
            try:
                await self._run_job(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unexpected error around job %s; its lease will expire", job.id)

    async def _run_job(self, job: jobs.ClaimedJob) -> None:
        renew = asyncio.create_task(self._renew(job.id))
        try:
            await self.verify(job.repository, job.digest)
        except ImageGone:
            log.info("%s@%s is gone upstream; job %s dropped", job.repository, job.digest, job.id)
        except asyncio.CancelledError:
            raise
        except OCIError as exc:
            if exc.code.code != "MANIFEST_INVALID":  # a manifest we refuse, of any kind
                await self._failed(job, exc)
                return
            await self.refuse(job.repository, job.digest, exc.message)
        except Exception as exc:
            await self._failed(job, exc)
            return
        finally:
            renew.cancel()
        async with self.db() as session, session.begin():
            if not await jobs.finish(session, job.id, self.owner):
                log.warning("job %s finished after its lease was taken over", job.id)

    async def _failed(self, job: jobs.ClaimedJob, exc: Exception) -> None:
        """An attempt that could not verify (upstream down...): retry later, or dead-letter."""
        cfg = self.settings.verification
        log.warning(
            "job %s (%s@%s) attempt %s failed: %s",
            job.id,
            job.repository,
            job.digest,
            job.attempts,
            exc,
        )
        async with self.db() as session, session.begin():
            state = await jobs.retry_or_bury(
                session,
                job.id,
                self.owner,
                f"{exc.__class__.__name__}: {exc}",
                job.attempts,
                cfg.max_attempts,
                cfg.retry_base_seconds,
            )
        if state == "dead":
            log.error("job %s dead-lettered after %s attempts", job.id, job.attempts)

    async def refuse(self, repository: str, digest: str, why: str) -> None:
        """Quarantine an image whose manifest the gatekeeper does not accept (more entries
        than ``max_manifest_layers``, malformed). It reached the registry around the
        gatekeeper, whose push would have refused it, so retrying cannot help and leaving it
        pending would tell pullers it is still being verified. No verifier ran, so nothing of
        the policy (fail-open verifiers, waivers) can let it through; an admin can release it.
        """
        policy = match_policy(self.settings.policies, repository)
        finding = FindingRecord("gatekeeper", "manifest.refused", "critical", why, "manifest")
        record = DecisionRecord(
            state="quarantined",
            reasons=(why,),
            policy=policy.name,
            policy_version=policy.version,
            data_versions={},
            outcomes=(),
            findings=(finding,),
        )
        async with self.db() as session, session.begin():
            old, new = await verdicts.record_decision(session, repository, digest, record)
        log.warning("%s@%s refused: %s", repository, digest, why)
        if old != new:
            await self.bus.publish(
                VerdictChange(
                    new, repository, digest, old, new, "gatekeeper", why, policy=policy.name
                )
            )

    async def _renew(self, job_id: int) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(*DATABASE_ERRORS):
                async with self.db() as session, session.begin():
                    await jobs.extend_lease(session, job_id, self.owner, self._lease)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                async with self.db() as session, session.begin():
                    expired = await verdicts.expire_releases(session)
            except DATABASE_ERRORS as exc:
                log.error("release sweep failed: %s", exc)
                continue
            for repository, digest in expired:
                await self.bus.publish(
                    VerdictChange(
                        "release-expired",
                        repository,
                        digest,
                        "released",
                        "quarantined",
                        "gatekeeper",
                        "the release expired",
                    )
                )

    # -- one verification -------------------------------------------------------------------

    async def verify(self, repository: str, digest: str) -> VerdictView:
        """Verify one image now and store the verdict (used by workers and ``verify`` CLI)."""
        image = await self.load_image(repository, digest)
        outcomes = await run_pipeline(image, self.verifiers, self._timeouts, 120.0)
        policy = match_policy(self.settings.policies, repository)
        async with self.db() as session:
            current = await verdicts.get(session, repository, digest)
            known = {
                f"{f.verifier}:{f.rule_id}"
                for f in await verdicts.findings(session, repository, digest)
            }
        # ``previous``: an ``on_new_findings = "notify"`` policy keeps an already pullable image
        # pullable on a periodic re-verification too, not only on a re-evaluation.
        previous = current.effective_state() if current is not None else None
        decision = decide(policy, repository, outcomes, previous=previous)
        findings = tuple(FindingRecord.of(f) for o in outcomes for f in o.findings)
        record = DecisionRecord(
            state=decision.state,
            reasons=decision.reasons,
            policy=decision.policy,
            policy_version=decision.policy_version,
            data_versions={o.verifier: o.version for o in outcomes},
            outcomes=tuple(_outcome_json(o) for o in outcomes),
            findings=findings,
        )
        async with self.db() as session, session.begin():
            old, new = await verdicts.record_decision(session, repository, digest, record)
            stored = await verdicts.get(session, repository, digest)
        assert stored is not None
        for outcome in outcomes:
            if outcome.status == "error" and decision.state == "passed":
                log.warning(
                    "%s@%s passed although verifier %s failed (%s): fail-open policy",
                    repository,
                    digest,
                    outcome.verifier,
                    outcome.detail,
                )
        if decision.warned:
            await self.bus.publish(
                VerdictChange(
                    "warned",
                    repository,
                    digest,
                    old,
                    new,
                    "gatekeeper",
                    "warn mode let it through: " + "; ".join(decision.reasons),
                    policy=policy.name,
                )
            )
        fresh = sorted({f.finding_id for f in decision.blocking} - known)
        if old == new and decision.notified and fresh:
            shown = ", ".join(fresh[:5]) + (", ..." if len(fresh) > 5 else "")
            await self.bus.publish(
                VerdictChange(
                    "new-findings",
                    repository,
                    digest,
                    old,
                    new,
                    "gatekeeper",
                    f"{'; '.join(decision.reasons)} (still pullable; new: {shown})",
                    policy=policy.name,
                )
            )
        if old != new:
            reason = "; ".join(decision.reasons) or "all checks passed"
            if new == "released":
                reason = f"still released by {stored.released_by}; re-scan found: {reason}"
            await self.bus.publish(
                VerdictChange(
                    new, repository, digest, old, new, "gatekeeper", reason, policy=policy.name
                )
            )
        return stored

    async def load_image(self, repository: str, digest: str) -> Image:
        """Fetch and check the manifest, index it, and read a JSON config if it has one."""
        async with await self.upstream.request(
            "GET",
            v2_path(repository, "manifests", digest),
            scopes=(f"repository:{repository}:pull",),
            headers={"Accept": ACCEPT},
        ) as resp:
            if resp.status == 404:
                raise ImageGone(f"{repository}@{digest}")
            if resp.status != 200:
                raise RuntimeError(f"upstream answered {resp.status} for the manifest")
            body = await read_at_most(resp.content, self.settings.max_manifest_bytes + 1)
            content_type = resp.headers.get("Content-Type")
        if len(body) > self.settings.max_manifest_bytes:
            limit = self.settings.max_manifest_bytes
            message = f"manifest invalid: larger than {limit} bytes (setting max_manifest_bytes)"
            raise OCIError(Code.MANIFEST_TOO_LARGE, message, {"limit": limit})
        if digest.startswith("sha256:") and sha256_digest(body) != digest:
            raise RuntimeError("upstream manifest does not match its digest")
        record = parse_manifest(
            repository,
            body,
            content_type,
            digest,
            max_descriptors=self.settings.max_manifest_layers,
        )
        async with self.db() as session, session.begin():
            if await manifests.get_manifest(session, repository, digest) is None:
                await manifests.record_manifest(session, record, None)
            referrers = await manifests.referrers(session, repository, digest, None)
        doc = json.loads(body)
        blobs = UpstreamBlobs(self.upstream, repository)
        config = None
        if record.media_type not in INDEXES and record.config_digest:
            config_desc = next(r for r in record.refs if r.kind == "config")
            if config_desc.media_type in IMAGE_CONFIGS:
                loaded = await _read_json_blob(blobs, config_desc.digest)
                config = loaded if isinstance(loaded, dict) else None
        return Image(
            repository=repository,
            digest=digest,
            media_type=record.media_type,
            manifest=doc,
            config=config,
            layers=tuple(
                Descriptor(r.media_type, r.digest, r.size) for r in record.refs if r.kind == "layer"
            ),
            children=tuple(
                Descriptor(r.media_type, r.digest, r.size, r.platform)
                for r in record.refs
                if r.kind == "manifest"
            ),
            blobs=blobs,
            referrers=tuple(Descriptor(r.media_type, r.digest, r.size) for r in referrers),
            referrer_types=tuple(r.artifact_type for r in referrers),
            manifests=UpstreamManifests(
                self.upstream, repository, self.settings.max_manifest_bytes
            ),
            repositories=UpstreamRepositories(
                self.upstream, self.db, self.settings.max_manifest_bytes
            ),
        )
