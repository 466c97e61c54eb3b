"""The verification service: persisted jobs in, verdicts and events out.

Request handlers only ``submit`` (mark pending + enqueue) and read verdicts; workers claim jobs
with leases, load the image from the upstream, run the verifier pipeline, apply the matching
policy and store the decision. A lease is short and renewed while its job runs, so a crash
leaves it to expire within ``verification.lease_seconds`` and another replica runs the job
again; a clean stop hands its running jobs back at once (:meth:`VerificationService.close`).
A verifier that fails is an ``error`` outcome the policy fails closed on, not a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.policy import Policy
from config.remotes import Remote, origin_of, remote_for
from config.settings import Settings
from oci.errors import Code, OCIError
from oci.manifests import ManifestRecord, parse_manifest, sha256_digest
from services import facts, incomplete, vex_intake
from services.eta import Estimate, Throughput, estimate
from services.events import EventBus, VerdictChange
from services.examine import Examined, Examiner, Fetched, StoredBlob, inherited_outcome
from services.facts import Facts
from services.inline import HeldManifest, verifies_inline
from services.policybook import PolicySource, load_book
from services.reevaluate import after_policy_change
from services.singleflight import SingleFlight
from services.wakeups import JOBS, VERDICTS, WIDENED, Wakeups
from storage import content, jobs, manifests, verdicts
from storage.db import DATABASE_ERRORS, reader
from storage.timeutil import now as utcnow
from storage.verdicts import DecisionRecord, FindingRecord, VerdictView
from storage.writer import read, transact
from upstream.bodies import read_at_most
from upstream.client import Upstream, v2_path
from upstream.reads import ACCEPT, UpstreamBlobs, UpstreamManifests, UpstreamRepositories
from verifiers.base import (
    Descriptor,
    Finding,
    Image,
    Verifier,
)
from verifiers.classify import CONTENT, MAX_CONFIG_BYTES, Kind, parse_config
from verifiers.lifecycle import PULLABLE, State
from verifiers.pipeline import Outcome, expected_verifiers, run_pipeline
from verifiers.policy import Decision, decide

T = TypeVar("T")

log = logging.getLogger("gatekeeper.verification")

GK = "gatekeeper"
"""The actor of verdict changes the gatekeeper makes itself."""
SPREAD_LIMIT = 1000
"""Most manifests one verification queues again because a blob they share gained findings."""


FORGET_SECONDS = 3600.0
"""How often finished jobs past their keeping are deleted (and once at start-up)."""
FORGET_BATCHES = 20
"""Batches of ``storage.jobs.PRUNE_BATCH`` one such sweep deletes at most."""


class ImageGone(Exception):
    """The upstream no longer has the manifest; there is nothing to verify."""


@dataclass(frozen=True)
class Checked:
    """What one verification established before the policy looked at it."""

    outcomes: list[Outcome]
    """The content examination's, the pipeline's and, if any, the inherited ``history``."""
    expected: frozenset[str] | None
    """The verifiers that apply to this content (None: all the policy requires)."""
    own: list[Finding]
    """Findings this manifest's own verification made (not inherited)."""
    inherited: list[tuple[Finding, str]]
    """Findings other images made about its blobs, each with the image it came from."""

    def record(self, decision: Decision, examined: Examined) -> DecisionRecord:
        """The stored form of the decision, with every outcome and finding behind it."""
        findings = [FindingRecord.of(f) for f in self.own]
        findings += [FindingRecord.of(f, origin) for f, origin in self.inherited]
        return DecisionRecord(
            state=decision.state,
            reasons=decision.reasons,
            policy=decision.policy,
            policy_version=decision.policy_version,
            data_versions={o.verifier: o.version for o in self.outcomes},
            outcomes=tuple(_outcome_json(o, examined.kind) for o in self.outcomes),
            findings=tuple(findings),
            held=examined.held,
        )


@dataclass(frozen=True)
class Start:
    """What the transaction claiming a first pull established for its verification, read
    no more after it: the origin it gave the pending verdict, the held manifest checked and
    indexed, and the stored facts (``services.facts``)."""

    origin: str
    fetched: Fetched
    facts: Facts


@dataclass(frozen=True)
class FirstPull:
    """A first pull this process verifies (:meth:`VerificationService.verify_inline`)."""

    job: jobs.ClaimedJob
    """Its job, born claimed by this process."""
    start: Start | None
    """None when the held manifest did not check out: the verification meets it again, as a
    worker would, and fails the attempt."""


@dataclass(frozen=True)
class Stored:
    """What the transaction that decided an image stored."""

    verdict: VerdictView
    old: State | None
    new: State
    decision: Decision
    known: set[str]
    """The findings the verdict had before (``verifier:rule_id``)."""


@dataclass(frozen=True)
class Moved:
    """The verdict was decided under another version of its policy than the verification
    used: nothing was stored (:meth:`VerificationService._store`)."""

    verdict: VerdictView


def _decided_under_another(current: VerdictView | None, policy: Policy) -> bool:
    """A decided verdict whose policy version is not ``policy``'s (either may be the newer:
    the caller asks the database which policy is in force)."""
    if current is None or current.state == State.PENDING or current.policy_version is None:
        return False
    return current.policy_version != policy.version


def _outcome_json(outcome: Outcome, kind: Kind) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "verifier": outcome.verifier,
        "version": outcome.version,
        "status": outcome.status,
        "detail": outcome.detail,
        "findings": len(outcome.findings),
        "duration_ms": outcome.duration_ms,
    }
    if outcome.exempt:
        stored["exempt"] = True
    if outcome.verifier == CONTENT:
        stored["kind"] = kind.value  # re-decisions from stored data need it
    return stored


class VerificationService:
    """Owns the worker tasks of this process; several processes may share one database."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[Any],
        upstream: Upstream,
        verifiers: list[Verifier],
        bus: EventBus,
        policies: PolicySource,
        *,
        on_incomplete: Callable[[], None] | None = None,
        wakeups: Wakeups | None = None,
        on_vex: Callable[[str], Awaitable[object]] | None = None,
        stored_blob: StoredBlob | None = None,
    ) -> None:
        """``on_incomplete`` is called for each image a dead-lettered verification leaves
        with a failure verdict (the metrics count them). ``wakeups``: how the other
        processes hear of queued jobs and changed verdicts (``services.wakeups``; default: this
        process only). ``on_vex`` with the cause, once a VEX referrer's document is stored (it
        applies the policies again: ``LivePolicies.apply``). ``stored_blob``: the registry's
        mounted storage, where an image's config is read first (``services.examine``)."""
        self._on_vex = on_vex
        self.settings = settings
        self.policies = policies
        """Which policy applies (with the stored waivers), never ``settings.policies``."""
        self._on_incomplete = on_incomplete
        self.db = db
        self.upstream = upstream
        self.verifiers = verifiers
        self.bus = bus
        self.owner = f"gk-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._claiming = asyncio.Lock()
        """One claim at a time in this process: the workers a wake-up woke together would
        otherwise each see the one queued job and each take SQLite's write lock to claim it."""
        self._verdicts: dict[tuple[str, str], tuple[VerdictView, float]] = {}
        self._blobs: dict[tuple[str, str], float] = {}
        self._verdict_reads: SingleFlight[tuple[str, str], VerdictView | None] = SingleFlight()
        self._blob_reads: SingleFlight[tuple[str, str], Any] = SingleFlight()
        self.cache_generation = 0  # drops of the cached decisions so far (see verdict())
        """Reads under way for cache misses, shared (``services.singleflight``)."""
        bus.subscribe(self.forget_verdict)
        bus.subscribe(self.on_change)
        self.wakeups = wakeups or Wakeups()
        self.wakeups.listen(JOBS, self._wake.set)
        # A verdict changed in another process (the verifying one, an admin's): no cached
        # decision of this one may outlive it.
        self.wakeups.listen(VERDICTS, self._forget_all)
        bus.subscribe(self._tell_processes)
        self.examiner = Examiner(upstream, db, self._depends, stored_blob)
        self._tasks: list[asyncio.Task[None]] = []
        self._inline: set[asyncio.Task[None]] = set()
        """First pulls this process verifies itself (:meth:`verify_inline`), still running."""
        cfg = settings.verification
        self._lease = timedelta(seconds=cfg.lease_seconds)
        self._timeouts = {
            name: v.timeout_seconds for name, v in settings.verifiers.items() if v.enabled
        }
        self.throughput = Throughput()
        """How fast this process verifies, for the wait a pull told to come back is given."""

    # -- where images come from -------------------------------------------------------------

    def origin(self, repository: str, verdict: VerdictView | None) -> str:
        """The image's origin: its verdict's, or for an image never seen the one it gets when
        it is first seen (``config.remotes``)."""
        if verdict is not None:
            return verdict.origin
        return origin_of(self.settings.remotes, repository, pushed=False)

    def remote(self, origin: str) -> Remote | None:
        """The remote of that name (None for ``local`` or a remote no longer configured)."""
        return next((r for r in self.settings.remotes if r.name == origin), None)

    def serving_remote(self, repository: str) -> Remote | None:
        """The remote the registry fetches ``repository`` from, if any."""
        return remote_for(self.settings.remotes, repository)

    async def policy_of(self, repository: str, digest: str) -> Policy:
        """The policy for an image by its stored origin (workers, admin actions)."""
        async with self.db() as session:
            found = await verdicts.get(session, repository, digest)
        return self.policies.match(repository, self.origin(repository, found))

    async def estimate(self, repository: str, digest: str) -> Estimate:
        """How long the pending image still needs, roughly (``services.eta``)."""
        async with self.db() as session:
            progress = await jobs.progress(session, repository, digest)
            size = await manifests.content_size(session, repository, digest)
        workers = self.settings.verification.workers
        return estimate(progress, size, self.throughput, workers, utcnow())

    # -- requests ---------------------------------------------------------------------------

    async def submit(
        self,
        repository: str,
        digest: str,
        reason: str,
        *,
        identity: str,
        pushed: bool = False,
        first_sight: bool = False,
        waited_for: bool = False,
    ) -> bool:
        """Mark the image pending (if it has no verdict yet) and queue a verification caused by
        ``identity`` (the pusher, or a named cause in ``storage.jobs``): workers are shared
        fairly between identities, so whoever floods the queue waits for their own jobs.

        ``pushed``: it was pushed through the gatekeeper, so it comes from here whatever
        remote serves the repository. ``first_sight``: queue only if this call made the
        verdict (a first pull: of several pulls racing for an image never seen, one queues its
        verification and the others wait for that one). ``waited_for``: a pull waits for the
        verdict, so the job goes ahead of the queue (:meth:`expedite`, in the same
        transaction). True if a verification was queued."""
        async with self.db() as session, session.begin():
            queued = await self.queue(
                session,
                repository,
                digest,
                reason,
                identity=identity,
                pushed=pushed,
                first_sight=first_sight,
                waited_for=waited_for,
            )
        if queued:
            await self.announce()
        return queued

    async def queue(
        self,
        session: AsyncSession,
        repository: str,
        digest: str,
        reason: str,
        *,
        identity: str,
        pushed: bool = False,
        first_sight: bool = False,
        waited_for: bool = False,
    ) -> bool:
        """:meth:`submit`'s writes in the caller's write transaction, so a caller with writes
        of its own (a manifest push indexes the manifest) takes one write turn, not two; it
        calls :meth:`announce` once that transaction committed, never before (a worker woken
        earlier would find no job)."""
        origin = origin_of(self.settings.remotes, repository, pushed=pushed)
        created = await verdicts.ensure_pending(
            session, repository, digest, GK, reason, origin=origin, pushed=pushed
        )
        if first_sight and not created:
            return False
        await jobs.enqueue(session, "verify", repository, digest, reason, identity=identity)
        if waited_for:
            await jobs.expedite(session, repository, digest)
        return True

    async def announce(self) -> None:
        """Wake the workers: a job was queued (and committed)."""
        await self.wakeups.notify(JOBS)

    async def expedite(self, repository: str, digest: str) -> None:
        """A pull is about to wait for this image's verdict: its queued job is claimed before
        the rest of the queue (``storage.jobs.claim`` says how far ahead)."""
        async with self.db() as session, session.begin():
            await jobs.expedite(session, repository, digest)

    def runs_inline(self, policy: Policy) -> bool:
        """A first pull under ``policy`` is verified by this process itself
        (``services.inline``; the ``verification.inline_first_pulls`` setting turns it off)."""
        enabled = self.settings.verification.inline_first_pulls
        return enabled and verifies_inline(policy, self.verifiers)

    async def verify_inline(
        self,
        repository: str,
        digest: str,
        reason: str,
        held: HeldManifest | None,
        timeout: float,
    ) -> VerdictView | None:
        """A first pull verified here, by the job a worker would run (:meth:`_run_job`), for
        at most ``timeout`` seconds. None when the image already had a verdict (another pull,
        here or in another process, made it first: wait for that one). Otherwise the verdict
        once it is decided, or as it stands when ``timeout`` runs out (an index waits for its
        platform images; a failed attempt was queued again for the workers): the verification
        carries on after that, and after the pull that started it went away.

        One write transaction (run whole in the writer thread, ``storage.writer``)
        marks it pending, queues its job already claimed by this process (leased: should this
        process die, a worker takes the job over when the lease runs out, and the image stays
        pending, unservable, until then), indexes the held manifest and reads what the
        verification weighs besides the content (``services.facts``): after it, the
        verification reads nothing until the transaction that stores its verdict. Of several
        processes racing, exactly one creates the pending verdict
        (``verdicts.ensure_pending``), so exactly one verifies."""
        policy = self.policies.match(repository, self.origin(repository, None))
        claim = partial(
            self._claim_first_pull,
            repository=repository,
            digest=digest,
            reason=reason,
            held=held,
            policy=policy,
        )
        claimed = await transact(self.db, claim)
        if claimed is None:
            return None
        job = claimed.job
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        decided: asyncio.Future[VerdictView] = loop.create_future()

        def tell(stored: VerdictView) -> None:
            if stored.state != State.PENDING and not decided.done():
                decided.set_result(stored)

        running = self._run_job(job, held, tell, claimed.start)
        task = asyncio.create_task(running, name=f"verify-{job.id}")
        self._inline.add(task)
        task.add_done_callback(self._inline.discard)
        await asyncio.wait((task, decided), timeout=timeout, return_when=FIRST_COMPLETED)
        if decided.done():
            return decided.result()
        decided.cancel()
        return await self.wait_for_verdict(repository, digest, max(deadline - loop.time(), 0))

    async def _claim_first_pull(
        self,
        session: AsyncSession,
        repository: str,
        digest: str,
        reason: str,
        held: HeldManifest | None,
        *,
        policy: Policy,
    ) -> FirstPull | None:
        """:meth:`verify_inline`'s transaction; None if the image had a verdict. It reads
        only its arguments and plain settings (it may run in the writer thread)."""
        origin = origin_of(self.settings.remotes, repository, pushed=False)
        created = await verdicts.ensure_pending(
            session, repository, digest, GK, reason, origin=origin
        )
        if not created:
            return None
        job = await jobs.enqueue_claimed(
            session,
            "verify",
            repository,
            digest,
            reason,
            identity=jobs.FIRST_PULL,
            owner=self.owner,
            lease=self._lease,
        )
        record = self._parsed(repository, digest, held)
        if record is None or held is None:
            return FirstPull(job, None)
        about = await manifests.index_if_absent(session, record)
        fetched = Fetched(record, json.loads(held.body), about or record.subject_digest)
        covering = policy.index_signatures_cover_children
        known = await facts.read(session, record, covering=covering)
        return FirstPull(job, Start(origin, fetched, known))

    async def verdict(
        self, repository: str, digest: str, *, cached: bool = False
    ) -> VerdictView | None:
        """The stored verdict. ``cached`` (the pull gate) may reuse a pullable verdict read
        less than ``verdict_cache_seconds`` ago; expiry of a release is still checked by the
        caller at the moment of use, and anything not pullable is always read afresh. A read
        begun before the cached decisions were dropped (:attr:`cache_generation`) and answered
        after it is not cached: it may be the verdict the drop was about."""
        key = (repository, digest)
        loop_time = asyncio.get_running_loop().time()
        ttl = self.settings.verification.verdict_cache_seconds
        if cached:
            hit = self._verdicts.get(key)
            if hit is not None and hit[1] > loop_time:
                return hit[0]
        generation = self.cache_generation
        if cached and ttl > 0:  # the pulls that missed together read once
            found = await self._verdict_reads.run(key, partial(self._read, repository, digest))
        else:
            found = await self._read(repository, digest)
        fresh = generation == self.cache_generation
        if ttl > 0 and found is not None and found.pullable() and fresh:
            if len(self._verdicts) >= 10_000:
                self._verdicts.clear()
            self._verdicts[key] = (found, loop_time + ttl)
        else:
            self._verdicts.pop(key, None)
        return found

    async def _read(self, repository: str, digest: str) -> VerdictView | None:
        async with reader(self.db) as session:  # on a pull's path: one round trip
            return await verdicts.get(session, repository, digest)

    async def forget_verdict(self, change: VerdictChange) -> None:
        """Bus listener: a verdict changed here, so no pull may see the old one. A change may
        change which blobs are pullable (holds, findings, dependents), so every cached blob
        decision goes too, unless the change only lets more out (``VerdictChange.widens``):
        under push load every pushed image passing dropped every pull's cached decisions."""
        self._verdicts.pop((change.repository, change.digest), None)
        if not change.widens:
            self._drop_decisions()

    def _forget_all(self) -> None:
        self._verdicts.clear()
        self._drop_decisions()

    def _drop_decisions(self) -> None:
        """Every cached blob decision and every read under way goes, and a read begun before
        this is not cached when it answers (:attr:`cache_generation`)."""
        self._blobs.clear()
        self._verdict_reads.forget()
        self._blob_reads.forget()
        self.cache_generation += 1

    async def _tell_processes(self, change: VerdictChange) -> None:
        """Bus listener: every process hears that a verdict changed (its waiting pulls read
        it at once, its cached decisions go unless the change only lets more out)."""
        await self.wakeups.notify(WIDENED if change.widens else VERDICTS)

    def signature_repositories(self, repository: str) -> set[str]:
        """Where the signatures of ``repository``'s images are kept (its own name unless a
        signature rule says otherwise): a signature pushed there re-verifies its image."""
        kept = {repository}
        for verifier in self.verifiers:
            where = getattr(verifier, "signature_repository", None)
            if callable(where):
                kept.add(str(where(repository)))
        return kept

    def blob_allowed(self, repository: str, digest: str) -> bool:
        """A blob the gate allowed less than ``verdict_cache_seconds`` ago (``proxy.gate``)."""
        until = self._blobs.get((repository, digest))
        return until is not None and until > asyncio.get_running_loop().time()

    async def judge_blob_once(
        self, repository: str, digest: str, judge: Callable[[], Awaitable[T]]
    ) -> T:
        """``judge()``, shared by the pulls of the same blob that arrive while it runs (the
        gate's blob judgement, ``proxy.gate``); each call its own when nothing is cached
        (``verdict_cache_seconds`` 0)."""
        if self.settings.verification.verdict_cache_seconds <= 0:
            return await judge()
        shared: T = await self._blob_reads.run((repository, digest), judge)
        return shared

    def remember_blob(self, repository: str, digest: str, generation: int) -> None:
        """Cache a blob the gate allowed, unless the cached decisions were dropped since it
        began judging (``generation``: :attr:`cache_generation` then)."""
        ttl = self.settings.verification.verdict_cache_seconds
        if ttl <= 0 or generation != self.cache_generation:
            return
        if len(self._blobs) >= 10_000:
            self._blobs.clear()
        self._blobs[(repository, digest)] = asyncio.get_running_loop().time() + ttl

    async def wait_for_verdict(
        self, repository: str, digest: str, timeout: float
    ) -> VerdictView | None:
        """Wait until the image leaves ``pending`` or ``timeout`` passes: read again on each
        verdict change any process announces (``services.wakeups``), and now and then anyway
        (a wake-up lost on the way)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        with self.wakeups.waiting(VERDICTS, WIDENED) as changed:
            while True:
                changed.clear()
                found = await self.verdict(repository, digest)
                if found is not None and found.state != State.PENDING:
                    return found
                if loop.time() >= deadline:
                    return found
                with contextlib.suppress(TimeoutError):
                    wait = min(delay, max(deadline - loop.time(), 0))
                    await asyncio.wait_for(changed.wait(), wait)
                delay = min(delay * 1.5, 0.5)

    # -- workers ----------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.settings.verification.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"verify-worker-{n}"))
        if self.settings.verification.workers:
            self._tasks.append(asyncio.create_task(self._sweeper(), name="release-sweeper"))

    async def close(self) -> None:
        """Stop the workers and the verifications of first pulls, and hand their jobs back,
        so another replica runs them now rather than when their leases run out (a rolling
        restart delays no verdict)."""
        stopping = [*self._tasks, *self._inline]
        if not stopping:
            return
        for task in stopping:
            task.cancel()
        for task in stopping:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        try:
            async with self.db() as session, session.begin():
                handed = await jobs.hand_back(session, self.owner)
        except DATABASE_ERRORS as exc:
            log.error("cannot hand back running jobs (their leases expire instead): %s", exc)
            return
        if handed:
            log.info("handed back %d running verification job(s) for another replica", handed)

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
                job = await self._claim(cfg.max_attempts)
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

    async def _claim(self, max_attempts: int) -> jobs.ClaimedJob | None:
        """A job, or None; the write transaction only when a read saw one to take."""
        async with self._claiming:
            # What to take is read first, outside the write transaction (on SQLite the fair
            # order's query held the one write turn every process's uploads wait for).
            async with self.db() as session:
                candidates = await jobs.first_candidates(session)
            if not candidates:
                return None
            # In the writer thread (``storage.writer``): the claim must not also wait for
            # this loop between its statements; it reads and returns plain values only.
            claim = partial(
                jobs.claim_among,
                candidates=candidates,
                owner=self.owner,
                lease=self._lease,
                max_attempts=max_attempts,
            )
            return await transact(self.db, claim)

    async def _run_job(
        self,
        job: jobs.ClaimedJob,
        held: HeldManifest | None = None,
        announced: Callable[[VerdictView], None] | None = None,
        start: Start | None = None,
    ) -> None:
        """``held``: the manifest a first pull's handler read, ``announced`` told the verdict
        as soon as it is announced (:meth:`verify_inline`; a pull waiting on a worker wakes at
        the same moment), ``start``: what the transaction that claimed it read. A
        verification that decides finishes the job in the transaction storing the verdict."""
        renew = asyncio.create_task(self._renew(job.id))
        decided = False
        try:
            await self.verify(
                job.repository,
                job.digest,
                held=held,
                job=job,
                announced=announced,
                start=start,
            )
            decided = True
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
        if not decided:
            async with self.db() as session, session.begin():
                await self._finish(session, job)
        # Dependents verified while this job ran waited for it (``services.examine``): now it is
        # done, whatever it came to, they are decided again.
        await self._waiting_dependents(job.repository, job.digest)

    async def _finish(self, session: AsyncSession, job: jobs.ClaimedJob) -> None:
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
        why = incomplete.failure_text(exc)
        remote = self.serving_remote(job.repository)
        if remote is not None:
            # The registry fetches what it has not kept from the remote: say which one.
            why = f"{why} (the registry fetches {job.repository} from remote {remote.name})"
        async with self.db() as session, session.begin():
            state = await jobs.retry_or_bury(
                session,
                job.id,
                self.owner,
                why,
                job.attempts,
                cfg.max_attempts,
                cfg.retry_base_seconds,
            )
        if state == "dead":
            log.error("job %s dead-lettered after %s attempts", job.id, job.attempts)
            await self.settle_abandoned(job.repository, job.digest)

    async def settle_abandoned(self, repository: str, digest: str) -> bool:
        """Decide an image whose latest verification was dead-lettered while it was still
        ``pending``: a failure that says why (``services.incomplete``), so it is
        never "still being verified" for ever. Only a pending verdict is touched: a decided
        image keeps its decision (a failed re-scan says nothing new of the content), and an
        admin's release or hold stays (``lifecycle.settle``). A later verification that
        completes replaces it. True if it was decided here."""
        policy = await self.policy_of(repository, digest)
        async with self.db() as session, session.begin():
            found = await jobs.abandoned(session, limit=1, image=(repository, digest))
            if not found:
                return False
            decision, record = incomplete.decision_for(policy, found[0])
            old, new = await verdicts.record_decision(session, repository, digest, record)
            stored = await verdicts.get(session, repository, digest)
        assert stored is not None
        log.error("%s@%s: %s", repository, digest, decision.reasons[0])
        if self._on_incomplete is not None:
            self._on_incomplete()
        await self._announce(stored, old, new, decision, set(), [], policy.name)
        return True

    async def settle_all_abandoned(self) -> int:
        """:meth:`settle_abandoned` for every pending image whose latest job is dead."""
        async with self.db() as session:
            found = await jobs.abandoned(session, limit=100)
        settled = 0
        for dead in found:
            settled += await self.settle_abandoned(dead.repository, dead.digest)
        return settled

    async def refuse(self, repository: str, digest: str, why: str) -> None:
        """Quarantine an image whose manifest the gatekeeper does not accept (more entries
        than ``max_manifest_layers``, malformed). It reached the registry around the
        gatekeeper, whose push would have refused it, so retrying cannot help and leaving it
        pending would tell pullers it is still being verified. No verifier ran, so nothing of
        the policy (fail-open verifiers, waivers) can let it through; an admin can release it.
        """
        policy = await self.policy_of(repository, digest)
        finding = FindingRecord("gatekeeper", "manifest.refused", "critical", why, "manifest")
        record = DecisionRecord(
            state=State.QUARANTINED,
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
        """The heartbeat of a running job: its lease is renewed every third of its length,
        so it stays short (a crashed replica's job is taken over within one lease) and a
        renewal or two may fail (the database briefly away) without losing it."""
        interval = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.db() as session, session.begin():
                    kept = await jobs.extend_lease(session, job_id, self.owner, self._lease)
            except DATABASE_ERRORS as exc:
                log.warning("cannot renew the lease of job %s: %s", job_id, exc)
                continue
            if not kept:
                log.warning("job %s: its lease ran out; another replica may run it too", job_id)
                return

    async def _sweeper(self) -> None:
        loop = asyncio.get_running_loop()
        next_abandoned = next_forget = loop.time()
        while True:
            await asyncio.sleep(1.0)
            if loop.time() >= next_abandoned:
                next_abandoned = loop.time() + incomplete.SWEEP_SECONDS
                try:
                    await self.settle_all_abandoned()
                except DATABASE_ERRORS as exc:
                    log.error("sweep of dead-lettered verifications failed: %s", exc)
            if loop.time() >= next_forget:
                next_forget = loop.time() + FORGET_SECONDS
                try:
                    await self.forget_finished_jobs()
                except DATABASE_ERRORS as exc:
                    log.error("forgetting finished jobs failed (will retry): %s", exc)
            try:
                async with self.db() as session:
                    if not await verdicts.any_release_expired(session):
                        continue
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
                        State.RELEASED,
                        State.QUARANTINED,
                        GK,
                        "the release expired",
                    )
                )

    async def forget_finished_jobs(self) -> int:
        """Delete the jobs finished more than ``verification.keep_finished_jobs_days`` ago, a
        batch per write transaction (a short turn each), at most :data:`FORGET_BATCHES`
        batches a sweep: a backlog is caught up over a few sweeps. Returns how many."""
        keep = timedelta(days=self.settings.verification.keep_finished_jobs_days)
        before = utcnow() - keep
        forgotten = 0
        for _ in range(FORGET_BATCHES):
            batch = await transact(self.db, partial(jobs.forget_finished, before=before))
            forgotten += batch
            if batch < jobs.PRUNE_BATCH:
                break
        if forgotten:
            log.info("forgot %d jobs finished before %s", forgotten, before.isoformat())
        return forgotten

    # -- one verification -------------------------------------------------------------------

    async def verify(
        self,
        repository: str,
        digest: str,
        *,
        held: HeldManifest | None = None,
        job: jobs.ClaimedJob | None = None,
        announced: Callable[[VerdictView], None] | None = None,
        start: Start | None = None,
    ) -> VerdictView:
        """Verify one manifest now and store the verdict (used by workers and the CLI).

        The content is examined first (``services.examine``): what it is decides which verifiers
        run, never the labels the pusher wrote, and of those only the ones the repository's
        policy requires (``verifiers.pipeline.applies``). Images and indexes go through the
        pipeline; artifacts of an allowed type do not; everything is decided by the policy
        together with what the examination found (holds, dependencies, inherited findings).

        ``start``: what a first pull's claiming transaction read (:meth:`verify_inline`), not
        read again. The decision is made in the transaction that stores it (on SQLite run
        whole in the writer thread), from the verdict as it stands there."""
        started = time.monotonic()
        if start is None:
            policy = await self.policy_of(repository, digest)
            fetched = await self.fetch(repository, digest, held)
            covering = policy.index_signatures_cover_children
            async with self.db() as session:
                known = await facts.read(session, fetched.record, covering=covering)
        else:
            policy = self.policies.match(repository, start.origin)
            fetched, known = start.fetched, start.facts
        examined = await self.examiner.examine(fetched, policy, known)
        brought = await self._vex(fetched, examined)
        checked = await self._check(fetched, policy, examined, brought, known)
        store = partial(self._store, job=job, repository=repository, digest=digest)
        result = await transact(
            self.db, partial(store, policy=policy, checked=checked, examined=examined)
        )
        if isinstance(result, Moved):
            policy, examined, checked, result = await self._in_force(
                result, store, policy, fetched, known, (examined, brought, checked)
            )
        stored = result.verdict
        await self._announce_stored(result, checked, policy)
        if announced is not None:
            announced(stored)
        await self._spread(repository, digest, checked.own, examined)
        if brought is not None and brought.stored is not None and self._on_vex is not None:
            vex = brought.stored
            await self._on_vex(f"VEX {vex.id} by {vex.author} on {repository}@{vex.subject}")
        blobs = [r.size for r in fetched.record.refs if r.kind in ("config", "layer")]
        self.throughput.observe(sum(blobs) if blobs else None, time.monotonic() - started)
        return await self._current_policy(stored)

    async def _announce_stored(self, result: Stored, checked: Checked, policy: Policy) -> None:
        """:meth:`_announce` what a verification stored; ``clean`` when none of its outcomes,
        inherited ones included, holds a finding on a blob."""
        clean = not any(f.blob for o in checked.outcomes for f in o.findings)
        await self._announce(
            result.verdict,
            result.old,
            result.new,
            result.decision,
            result.known,
            checked.outcomes,
            policy.name,
            clean=clean,
        )

    async def _in_force(
        self,
        moved: Moved,
        store: Callable[..., Awaitable[Stored | Moved]],
        policy: Policy,
        fetched: Fetched,
        known: Facts,
        found: tuple[Examined, vex_intake.Intake | None, Checked],
    ) -> tuple[Policy, Examined, Checked, Stored]:
        """The verdict was decided, while this verification ran, under another version of its
        policy (a waiver, a VEX): decide under the one in force, from this run's results
        (``found``), rather than store a decision the next moment undoes (a release undone
        for a moment is a pull refused). The database says which is in force; when it is the
        one this run used, the other decision was the stale one and this one is stored."""
        examined, brought, checked = found
        book = await load_book(self.db, self.settings.policies)
        repository = moved.verdict.repository
        live = book.match(repository, self.origin(repository, moved.verdict))
        if live.version != policy.version:
            covering = live.index_signatures_cover_children
            if covering != policy.index_signatures_cover_children:
                async with self.db() as session:
                    known = await facts.read(session, fetched.record, covering=covering)
            policy = live
            examined = await self.examiner.examine(fetched, policy, known)
            checked = await self._check(fetched, policy, examined, brought, known)
        again = partial(store, policy=policy, checked=checked, examined=examined, guard=False)
        result = await transact(self.db, again)
        assert isinstance(result, Stored)
        return policy, examined, checked, result

    async def _store(
        self,
        session: AsyncSession,
        *,
        policy: Policy,
        checked: Checked,
        examined: Examined,
        job: jobs.ClaimedJob | None,
        repository: str,
        digest: str,
        guard: bool = True,
    ) -> Stored | Moved:
        """:meth:`verify`'s write transaction: decide from the verdict as it stands (locked),
        store the decision, and finish the job that ran it. It reads only its arguments (it
        may run in the writer thread: ``decide`` is pure).

        ``guard``: store nothing, and say so, when the verdict was decided under another
        version of its policy than ``policy`` (a waiver or VEX applied while this ran, or this
        process's policies are behind another's); the caller finds out which is in force."""
        current = await verdicts.lock_current(session, repository, digest)
        if guard and _decided_under_another(current, policy):
            assert current is not None
            return Moved(current)
        known = await verdicts.finding_ids(session, repository, digest)
        # ``previous``: an ``on_new_findings = "notify"`` policy keeps an already pullable image
        # pullable on a periodic re-verification too, not only on a re-evaluation.
        decision = decide(
            policy,
            repository,
            checked.outcomes,
            previous=current.effective_state() if current is not None else None,
            expected=checked.expected,
            waiting=examined.waiting,
            digest=digest,
        )
        record = checked.record(decision, examined)
        old, new = await verdicts.record_decision(session, repository, digest, record)
        await manifests.set_content_kind(session, repository, digest, examined.kind)
        stored = await verdicts.get(session, repository, digest)
        if job is not None:  # the job that ran this is done with the verdict it stored
            await self._finish(session, job)
        assert stored is not None
        return Stored(stored, old, new, decision, known)

    async def _check(
        self,
        fetched: Fetched,
        policy: Policy,
        examined: Examined,
        brought: vex_intake.Intake | None,
        known: Facts,
    ) -> Checked:
        """Run what applies to the examined content: images and indexes go through the
        pipeline (an index only through the verifiers that check indexes, which is what the
        policy then expects to have run); the outcome of the VEX an artifact brings, if any;
        findings other images made about its blobs join as the ``history`` outcome."""
        outcomes = [examined.outcome()]
        expected: frozenset[str] | None = frozenset()
        if examined.kind in (Kind.IMAGE, Kind.INDEX):
            image = self._image(fetched, examined.config, examined.config_problem, known)
            required = frozenset(policy.require)
            outcomes += await run_pipeline(
                image, self.verifiers, self._timeouts, 120.0, required=required
            )
            incomplete.require_readable(outcomes)
            expected = expected_verifiers(image, self.verifiers, required)
        if brought is not None:
            outcomes.append(brought.outcome)
        own = [f for o in outcomes for f in o.findings]
        history = inherited_outcome(examined.inherited, own)
        if history is None:
            return Checked(outcomes, expected, own, [])
        return Checked([*outcomes, history[0]], expected, own, history[1])

    async def _vex(self, fetched: Fetched, examined: Examined) -> vex_intake.Intake | None:
        """The VEX an artifact about an image brings (``services.vex_intake``), checked against
        the keys the policy of the image it is about trusts."""
        if examined.kind != Kind.ARTIFACT or fetched.about is None:
            return None
        repository = fetched.record.repository
        trusting = await self.policy_of(repository, fetched.about)
        reader = UpstreamBlobs(self.upstream, repository)
        return await vex_intake.intake(self.db, reader, fetched, trusting)

    async def _waiting_dependents(self, repository: str, digest: str) -> None:
        """Manifests left pending while this one was being verified are decided again now,
        whatever it came to (its change of state, if any, reached them through
        :meth:`on_change` while its job still ran)."""
        async with self.db() as session:
            found = await content.dependents(session, repository, digest)
            states = await content.states(session, repository, found)
        for other in found:
            if other in states and states[other][0] == State.PENDING:
                why = f"{digest} it depends on was verified again"
                await self.submit(repository, other, why, identity=jobs.DEPENDENCY)

    async def _current_policy(self, stored: VerdictView) -> VerdictView:
        """A waiver made or withdrawn while this image was being verified changed its policy
        after the decision began: decide it again at once from what was just stored (the
        re-evaluation that followed the waiver may have passed it already)."""
        repository, digest = stored.repository, stored.digest
        applies = self.policies.match(repository, stored.origin)
        if stored.policy_version in (None, applies.version):
            return stored
        await after_policy_change(
            self.db,
            self.settings.policies,
            repository=repository,
            publish=self.bus.publish,
            cause="waivers changed during verification",
        )
        async with self.db() as session:
            again = await verdicts.get(session, repository, digest)
        return again or stored

    async def _announce(
        self,
        stored: VerdictView,
        old: State | None,
        new: State,
        decision: Decision,
        known: set[str],
        outcomes: list[Outcome],
        policy: str,
        *,
        clean: bool = False,
    ) -> None:
        """Publish what changed (the access log, webhooks and dependents listen). ``clean``:
        no outcome of the verification, inherited ones included, holds a finding on a blob
        (``VerdictChange.widens``)."""
        repository, digest = stored.repository, stored.digest
        for outcome in outcomes:
            if outcome.status == "error" and decision.state == State.PASSED:
                log.warning(
                    "%s@%s passed although verifier %s failed (%s): fail-open policy",
                    repository,
                    digest,
                    outcome.verifier,
                    outcome.detail,
                )
        reasons = "; ".join(decision.reasons)
        if decision.warned:
            why = "warn mode let it through: " + reasons
            await self.bus.publish(
                VerdictChange("warned", repository, digest, old, new, GK, why, policy=policy)
            )
        fresh = sorted({f.finding_id for f in decision.blocking} - known)
        if old == new and decision.notified and fresh:
            shown = ", ".join(fresh[:5]) + (", ..." if len(fresh) > 5 else "")
            why = f"{reasons} (still pullable; new: {shown})"
            await self.bus.publish(
                VerdictChange("new-findings", repository, digest, old, new, GK, why, policy=policy)
            )
        if old != new:
            why = reasons or "all checks passed"
            if new == State.RELEASED:
                why = f"still released by {stored.released_by}; re-scan found: {why}"
            widens = clean and new in PULLABLE and old not in PULLABLE
            await self.bus.publish(
                VerdictChange(
                    new, repository, digest, old, new, GK, why, policy=policy, widens=widens
                )
            )

    async def _spread(
        self, repository: str, digest: str, own: list[Finding], examined: Examined
    ) -> None:
        """Blobs found to carry findings no image had reported before: every other manifest
        that lists them is verified again, so its verdict weighs them too (the pull gate
        already refuses such a blob meanwhile)."""
        before = {
            (i.finding.verifier, i.finding.rule_id, i.finding.location, i.finding.blob)
            for i in examined.inherited
        }
        tainted = sorted(
            {
                f.blob
                for f in own
                if f.blob and (f.verifier, f.rule_id, f.location, f.blob) not in before
            }
        )
        if not tainted:
            return
        async with self.db() as session:
            others = await content.referencing(session, tainted, limit=SPREAD_LIMIT + 1)
        others = [key for key in others if key != (repository, digest)]
        if len(others) > SPREAD_LIMIT:
            log.warning(
                "%s@%s: %d+ other manifests share newly flagged blobs; re-verifying the first %d",
                repository,
                digest,
                SPREAD_LIMIT,
                SPREAD_LIMIT,
            )
        for other_repository, other in others[:SPREAD_LIMIT]:
            await self.submit(
                other_repository,
                other,
                f"a blob it shares was found to carry findings in {repository}@{digest}",
                identity=jobs.SHARED_CONTENT,
            )

    async def on_change(self, change: VerdictChange) -> None:
        """Bus listener: a verdict changed state, so the manifests that depend on it (indexes
        that list it, artifacts about it) are decided again. The look-up runs before a held
        first pull is answered (it waits for the announcement): on SQLite it is one hand-over
        to the writer thread (``storage.writer.read``), not a hop per statement."""
        if change.old_state == change.new_state or change.old_state is None:
            return
        try:
            found = await read(
                self.db,
                partial(content.dependents, repository=change.repository, digest=change.digest),
            )
        except DATABASE_ERRORS as exc:
            log.error("cannot find what depends on %s: %s", change.digest, exc)
            return
        for digest in found:
            why = f"{change.digest} it depends on is {change.new_state}"
            await self.submit(change.repository, digest, why, identity=jobs.DEPENDENCY)

    async def _depends(self, repository: str, digest: str, reason: str) -> None:
        """The examination found a manifest another depends on with no verdict yet."""
        await self.submit(repository, digest, reason, identity=jobs.DEPENDENCY)

    async def fetch(
        self, repository: str, digest: str, held: HeldManifest | None = None
    ) -> Fetched:
        """Fetch and check the manifest, and index it if it is new. ``held``: its bytes as a
        serving handler read them, checked here exactly as the registry's answer would be."""
        if held is None or not digest.startswith("sha256:"):
            body, content_type = await self._download(repository, digest)
        else:
            body, content_type = held.body, held.content_type
        record = self._checked(repository, digest, body, content_type)
        async with self.db() as session:  # a read: a write turn only for a manifest not indexed
            row = await manifests.get_manifest(session, repository, digest)
            about = row.about_digest if row is not None else None
        if row is None:
            async with self.db() as session, session.begin():
                row = await manifests.get_manifest(session, repository, digest)
                if row is None:
                    await manifests.record_manifest(session, record, None)
                about = row.about_digest if row is not None else record.subject_digest
        return Fetched(record, json.loads(body), about or record.subject_digest)

    async def _download(self, repository: str, digest: str) -> tuple[bytes, str | None]:
        """The manifest's bytes and ``Content-Type`` from the registry."""
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
            return body, resp.headers.get("Content-Type")

    def _checked(
        self, repository: str, digest: str, body: bytes, content_type: str | None
    ) -> ManifestRecord:
        """The manifest parsed, once its size and digest are checked."""
        if len(body) > self.settings.max_manifest_bytes:
            limit = self.settings.max_manifest_bytes
            message = f"manifest invalid: larger than {limit} bytes (setting max_manifest_bytes)"
            raise OCIError(Code.MANIFEST_TOO_LARGE, message, {"limit": limit})
        if digest.startswith("sha256:") and sha256_digest(body) != digest:
            raise RuntimeError("upstream manifest does not match its digest")
        return parse_manifest(
            repository,
            body,
            content_type,
            digest,
            max_descriptors=self.settings.max_manifest_layers,
        )

    def _parsed(
        self, repository: str, digest: str, held: HeldManifest | None
    ) -> ManifestRecord | None:
        """The held manifest's record, to index with the pending verdict; None if there is
        none or it does not check out (the verification then fails on it as it would on the
        registry's: :meth:`fetch` checks it again)."""
        if held is None or not digest.startswith("sha256:"):
            return None
        try:
            return self._checked(repository, digest, held.body, held.content_type)
        except Exception:  # whatever it is, the verification meets it again and decides
            return None

    async def load_image(self, repository: str, digest: str) -> Image:
        """The manifest as verifiers see it, config read (``gatekeeper verify``)."""
        policy = await self.policy_of(repository, digest)
        fetched = await self.fetch(repository, digest)
        config, problem = None, None
        if fetched.record.config_digest is not None:
            blobs = UpstreamBlobs(self.upstream, repository)
            data = await blobs.read(fetched.record.config_digest, MAX_CONFIG_BYTES)
            config, problem = parse_config(data)
        covering = policy.index_signatures_cover_children
        async with self.db() as session:
            known = await facts.read(session, fetched.record, covering=covering)
        return self._image(fetched, config, problem, known)

    def _image(
        self,
        fetched: Fetched,
        config: dict[str, Any] | None,
        problem: str | None,
        known: Facts,
    ) -> Image:
        """The image as verifiers see it, its stored referrers and covering indexes from
        ``known`` (read for this verification, ``services.facts``)."""
        record = fetched.record
        repository, digest = record.repository, record.digest
        is_index = record.config_digest is None
        referrers = known.referrers
        covering = known.covering
        limit = self.settings.max_manifest_bytes
        config_ref = next((r for r in record.refs if r.kind == "config"), None)
        return Image(
            repository=repository,
            digest=digest,
            media_type=record.media_type,
            manifest=fetched.doc,
            config=config,
            layers=tuple(
                Descriptor(r.media_type, r.digest, r.size) for r in record.refs if r.kind == "layer"
            ),
            children=tuple(
                Descriptor(r.media_type, r.digest, r.size, r.platform)
                for r in record.refs
                if r.kind == "manifest"
            ),
            blobs=UpstreamBlobs(self.upstream, repository),
            referrers=tuple(Descriptor(r.media_type, r.digest, r.size) for r in referrers),
            referrer_types=tuple(r.artifact_type for r in referrers),
            manifests=UpstreamManifests(self.upstream, repository, limit),
            repositories=UpstreamRepositories(self.upstream, self.db, limit),
            config_descriptor=(
                Descriptor(config_ref.media_type, config_ref.digest, config_ref.size)
                if config_ref is not None
                else None
            ),
            config_problem=problem,
            covering_indexes=tuple(covering),
            is_index=is_index,
        )
