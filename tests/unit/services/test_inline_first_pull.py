"""First pulls verified by the serving process itself (``services.inline``,
``VerificationService.verify_inline``): which policies take that path, and that it keeps the
queue's guarantees: one verification and one verdict however many processes race for an
image, and an image whose inline verification died stays pending (unservable) until a worker
takes the job over.

Each "process" here is a :class:`VerificationService` of its own on one shared database (two
owners, two leases). The manifest is the one a handler holds and the config comes from a stand
in for the registry's mounted storage, so the verification reads nothing else.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Connection, Engine

from config.policy import Policy
from config.settings import load_settings
from oci.manifests import sha256_digest
from services.events import EventBus
from services.inline import HeldManifest, light, verifies_inline
from services.policybook import load_book
from services.verification import VerificationService
from storage import jobs, verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.models import Job, VerdictEvent
from tests.support.database import Database
from tests.support.ocihttp import OCI_MANIFEST, image_config, image_manifest
from upstream.client import Upstream
from verifiers.base import Finding, Image, Verifier
from verifiers.config_sanity import ConfigSanity
from verifiers.lifecycle import State
from verifiers.signatures.verifier import SignatureVerifier

REPO = "team/app"
POLICIES = [{"name": "sane", "repositories": ["team/*"], "require": ["config-sanity"]}]


class Heavy:
    """A verifier that says nothing about what it reads (as every plugin): heavy."""

    name = "heavy"
    version = "1"

    async def verify(self, image: Image) -> list[Finding]:
        return []


class LightNeedingHeavy(Heavy):
    name = "light-needing"
    reads_layers = False
    needs = ("heavy",)


def policy(*require: str, **kw: Any) -> Policy:
    return Policy.model_validate({"name": "p", "repositories": ["*"], "require": require, **kw})


def test_only_a_policy_of_light_verifiers_is_verified_inline() -> None:
    installed: list[Verifier] = [ConfigSanity(), Heavy(), LightNeedingHeavy()]
    assert verifies_inline(policy("config-sanity"), installed)
    assert verifies_inline(policy(), installed)  # the content examination alone
    assert not verifies_inline(policy("config-sanity", "heavy"), installed)
    assert not verifies_inline(policy("light-needing"), installed)  # what it needs is heavy
    assert not verifies_inline(policy("config-sanity", "missing"), installed)
    assert not verifies_inline(policy("config-sanity", mode="warn"), installed)
    assert not verifies_inline(policy("config-sanity", deny_all=True), installed)


def test_signatures_are_heavy_and_config_sanity_is_light() -> None:
    """Signatures read referrers: their class does not claim lightness, so they never run
    inline; nothing else decides it (the check reads the class, not the image)."""
    assert not light(cast(Any, SignatureVerifier))
    assert light(ConfigSanity())


Service = Callable[[], VerificationService]


@pytest.fixture
async def processes(fresh_db: Database) -> AsyncIterator[Service]:
    """Makes verification services sharing one database, as processes would."""
    env = {
        "GATEKEEPER_DATABASE_URL": fresh_db.url,
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFICATION__LEASE_SECONDS": "1",
    }
    settings = load_settings(env=env)
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    db = sessionmaker(engine)
    book = await load_book(db, settings.policies)
    configs: dict[str, bytes] = {}

    def stored(repository: str, digest: str, limit: int) -> bytes | None:
        return configs.get(digest)

    made: list[VerificationService] = []

    def make() -> VerificationService:
        upstream = cast(Upstream, None)  # nothing may be asked of the registry
        service = VerificationService(
            settings, db, upstream, [ConfigSanity()], EventBus(), book, stored_blob=stored
        )
        made.append(service)
        return service

    make.configs = configs  # type: ignore[attr-defined]
    yield make
    for service in made:
        await service.close()
    await engine.dispose()


def image(make: Service, config: bytes) -> tuple[str, HeldManifest]:
    make.configs[sha256_digest(config)] = config  # type: ignore[attr-defined]
    manifest = image_manifest(config, [b"layer"])
    return sha256_digest(manifest), HeldManifest(manifest, OCI_MANIFEST)


BROKEN = json.dumps({"architecture": "amd64", "rootfs": {"diff_ids": []}}).encode()
"""No ``os``, and no layer where the manifest lists one: config-sanity fails it."""


@pytest.mark.parametrize(("config", "state"), [(None, State.PASSED), (BROKEN, State.QUARANTINED)])
async def test_two_processes_racing_make_one_verdict(
    processes: Service, config: bytes | None, state: State
) -> None:
    one, two = processes(), processes()
    digest, held = image(processes, config or image_config(layers=1))
    found = await asyncio.gather(
        one.verify_inline(REPO, digest, "first pull", held, 10),
        two.verify_inline(REPO, digest, "first pull", held, 10),
    )
    decided = [f for f in found if f is not None]
    assert len(decided) == 1, "exactly one process verifies"
    assert decided[0].state == state
    async with one.db() as session:
        events = (
            await session.scalars(
                select(VerdictEvent.event)
                .where(VerdictEvent.digest == digest)
                .order_by(VerdictEvent.id)
            )
        ).all()
        runs = (await session.scalars(select(Job).where(Job.digest == digest))).all()
    assert events == ["pending", state.value]
    assert [(j.state, j.attempts) for j in runs] == [("done", 1)]
    # The other process's pull waits for that verdict and gets the same one.
    waited = await two.wait_for_verdict(REPO, digest, 1)
    assert waited is not None and waited.state == state


async def test_a_process_that_dies_mid_verification_leaves_it_pending_for_a_worker(
    processes: Service,
) -> None:
    dead, worker = processes(), processes()
    digest, held = image(processes, BROKEN)
    async with dead.db() as session, session.begin():
        policy = dead.policies.match(REPO)
        claimed = await dead._claim_first_pull(
            session, REPO, digest, "first pull", held, policy=policy
        )
    assert claimed is not None
    job = claimed.job
    # ... and the process is gone before it verified anything.
    async with worker.db() as session:
        pending = await verdicts.get(session, REPO, digest)
    assert pending is not None and pending.state == State.PENDING and not pending.pullable()
    async with worker.db() as session, session.begin():
        assert await jobs.claim(session, worker.owner, worker._lease, 5) is None, "leased"
    await asyncio.sleep(1.2)  # the lease (1 s) runs out
    async with worker.db() as session, session.begin():
        taken = await jobs.claim(session, worker.owner, worker._lease, 5)
    assert taken is not None and taken.id == job.id and taken.attempts == 2

    async def download(repository: str, digest: str) -> tuple[bytes, str | None]:
        return held.body, held.content_type  # the registry's answer

    worker._download = download  # type: ignore[method-assign]
    await worker._run_job(taken)
    async with worker.db() as session:
        final = await verdicts.get(session, REPO, digest)
    assert final is not None and final.state == State.QUARANTINED


async def test_a_stopping_process_hands_an_unfinished_inline_verification_back(
    processes: Service,
) -> None:
    serving = processes()
    digest, held = image(processes, image_config(layers=1))
    stuck = asyncio.Event()

    async def examine(*args: Any) -> Any:
        await stuck.wait()  # never set: the verification is still running

    serving.examiner.examine = examine  # type: ignore[method-assign, assignment]
    found = await serving.verify_inline(REPO, digest, "first pull", held, 0.2)
    assert found is not None and found.state == State.PENDING, "the hold ran out"
    await serving.close()
    async with serving.db() as session:
        runs = (await session.scalars(select(Job).where(Job.digest == digest))).all()
        still = await verdicts.get(session, REPO, digest)
    assert [(j.state, j.lease_owner) for j in runs] == [("queued", None)]
    assert still is not None and still.state == State.PENDING


async def test_a_held_manifest_that_is_not_the_digest_is_not_believed(
    processes: Service,
) -> None:
    """The handler's bytes are only a head start, checked as the registry's answer is: bytes
    that do not hash to the digest fail the attempt, the job goes back to the queue for the
    workers, and the image stays pending."""
    serving = processes()
    digest, _ = image(processes, image_config(layers=1))
    forged = HeldManifest(image_manifest(image_config(layers=1), [b"other"]), OCI_MANIFEST)
    found = await serving.verify_inline(REPO, digest, "first pull", forged, 0.5)
    assert found is not None and found.state == State.PENDING
    async with serving.db() as session:
        runs = (await session.scalars(select(Job).where(Job.digest == digest))).all()
    assert [j.state for j in runs] == ["queued"]


Session = tuple[str, list[str], int]
"""One database session: ``write`` (committed) or ``read``, the first word of each statement it
ran (``BEGIN`` and savepoints left out: on SQLite each transaction runs in a savepoint of the
batch committed with it, ``storage.group_commit``), and the thread it ended in."""


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    """Every session of every engine while the test runs, the writer thread's too."""
    ended: list[Session] = []
    running: dict[int, list[str]] = {}

    def statement(conn: Connection, cursor: Any, text: str, *args: Any) -> None:
        if not text.startswith(("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT")):
            running.setdefault(id(conn), []).append(text.split(None, 1)[0])

    def commit(conn: Connection) -> None:
        ended.append(("write", running.pop(id(conn), []), threading.get_ident()))

    def rollback(conn: Connection) -> None:
        ended.append(("read", running.pop(id(conn), []), threading.get_ident()))

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", statement),
        ("commit", commit),
        ("rollback", rollback),
    ]
    for name, listener in listeners:
        event.listen(Engine, name, listener)
    yield ended
    for name, listener in listeners:
        event.remove(Engine, name, listener)


async def test_an_inline_first_pull_takes_two_write_transactions_and_no_read_between(
    processes: Service, sessions: list[Session], fresh_db: Database
) -> None:
    """The database work of one first pull verified inline, counted: a change that adds a
    transaction, a read or a statement to the pull's path fails here. The claiming transaction
    marks it pending, queues its claimed job, indexes the manifest and reads what the
    verification weighs besides the content (holds, other images' findings about its blobs,
    referrers, indexes listing it); the storing one reads the verdict as it stands (locked)
    and its findings, and stores the decision and the job's end. Nothing is read in between;
    after them only the look-ups of what depends on the changed verdict. Both transactions
    run in the writer thread (``storage.writer``), not on the serving loop."""
    service = processes()
    service._lease = timedelta(seconds=60)  # no renewal during the count
    digest, held = image(processes, image_config(layers=1))
    found = await service.verify_inline(REPO, digest, "first pull", held, 10)
    assert found is not None and found.state == State.PASSED
    await asyncio.gather(*service._inline)  # what the verification does after the answer
    assert [kind for kind, _, _ in sessions] == ["write", "write", "read", "read"]
    (_, claim, claimed_in), (_, store, stored_in) = sessions[:2]
    indexing = ["INSERT", "INSERT"]  # the manifest (unless indexed already), its references
    facts = ["SELECT"] * 4  # holds, findings about its blobs, referrers, covering indexes
    assert claim == ["INSERT", "INSERT", "INSERT", *indexing, *facts]  # verdict, event, job
    # the verdict (locked), its findings' ids; the verdict, its findings, its event; the
    # manifest's kind; the job
    assert store == ["SELECT", "SELECT", "UPDATE", "DELETE", "INSERT", "UPDATE", "UPDATE"]
    dependents = ["SELECT"]  # artifacts about it and indexes listing it
    assert [statements for _, statements, _ in sessions[2:]] == [dependents, dependents]
    here = threading.get_ident()
    assert claimed_in != here and stored_in != here
