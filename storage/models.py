"""Tables. Changes here need a migration in ``storage/migrations/versions``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.timeutil import UTCDateTime


class Base(DeclarativeBase):
    """Declarative base shared by every table."""


# BigInteger primary keys autoincrement on PostgreSQL; SQLite needs plain INTEGER for rowid.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Manifest(Base):
    """A manifest pushed through (or first seen by) the gatekeeper, per repository and digest."""

    __tablename__ = "manifests"
    __table_args__ = (
        UniqueConstraint("repository", "digest", name="uq_manifests_repo_digest"),
        Index("ix_manifests_subject", "repository", "subject_digest"),
        Index("ix_manifests_about", "repository", "about_digest"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(140))
    media_type: Mapped[str] = mapped_column(String(255))
    artifact_type: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    config_digest: Mapped[str | None] = mapped_column(String(140))
    subject_digest: Mapped[str | None] = mapped_column(String(140))
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    about_digest: Mapped[str | None] = mapped_column(String(140))
    """The image this manifest is about, if any: its ``subject``, or the digest in a cosign tag
    (``sha256-<hex>.sig``) it was pushed under. It is pullable only while that image is."""
    content_kind: Mapped[str | None] = mapped_column(String(16))
    """What verification found it to be, from its content: ``image``, ``index``, ``artifact``
    or ``refused`` (None: not verified yet). An admin's hold on an image covers its config; on
    an artifact, only blobs no pullable manifest shares (its ``{}`` config is everyone's)."""

    refs: Mapped[list[ManifestRef]] = relationship(
        back_populates="manifest", cascade="all, delete-orphan", order_by="ManifestRef.position"
    )


class ManifestRef(Base):
    """A descriptor a manifest points at: its config, a layer, or an index's child manifest."""

    __tablename__ = "manifest_refs"
    __table_args__ = (Index("ix_manifest_refs_digest", "digest"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # config | layer | manifest
    digest: Mapped[str] = mapped_column(String(140))
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    platform: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    manifest: Mapped[Manifest] = relationship(back_populates="refs")


class Tag(Base):
    """Where a tag pointed when it was last pushed through the gatekeeper."""

    __tablename__ = "tags"

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AccessLog(Base):
    """One row per request: who, what, which digest, what happened and why."""

    __tablename__ = "access_log"
    __table_args__ = (
        # One row per request id: the spool replayed after a crash, and a batch retried after
        # a commit whose answer was lost, add nothing twice (``INSERT ... ON CONFLICT``).
        Index("uq_access_log_request_id", "request_id", unique=True),
        Index("ix_access_log_time", "time"),
        Index("ix_access_log_repository", "repository", "time"),
        Index("ix_access_log_identity", "identity", "time"),
        # The console's access-log search (migration 0018).
        Index("ix_access_log_action", "action", "time"),
        Index("ix_access_log_decision", "decision", "time"),
        Index("ix_access_log_digest", "digest", "time"),
        # The hash chain (migration 0020): a writer finds its chain's head, verify walks it.
        Index("ix_access_log_chain", "chain", "seq"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str | None] = mapped_column(String(64))
    identity: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(255))
    reference: Mapped[str | None] = mapped_column(String(255))
    digest: Mapped[str | None] = mapped_column(String(140))
    status: Mapped[int] = mapped_column(Integer)
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[float] = mapped_column(Float)
    upstream_status: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    chain: Mapped[str | None] = mapped_column(String(64))
    """The chain this row is in: one per access-log writer (a replica's run), or NULL on rows
    written before the chain existed (``audit_legacy``)."""
    seq: Mapped[int | None] = mapped_column(BigInteger)
    """The row's position in its chain, from 1 (0 is the chain's opening checkpoint)."""
    row_hash: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 over the previous row's hash and this row's content (``storage/audit_hashing``)."""


class Verdict(Base):
    """The current decision for one image (repository + digest). Only a landed result changes
    it: a re-scan in progress never flips a served image back to pending."""

    __tablename__ = "verdicts"
    __table_args__ = (
        Index("ix_verdicts_digest", "digest"),
        # The console's quarantine queue (migration 0018).
        Index("ix_verdicts_state_updated", "state", "updated_at"),
        Index("ix_verdicts_updated", "updated_at"),
    )

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # pending|passed|quarantined|released
    reasons: Mapped[list[str]] = mapped_column(JSON)
    policy: Mapped[str | None] = mapped_column(String(100))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    data_versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Verifier name -> version (and later advisory-data versions) the verdict came from."""
    outcomes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    released_by: Mapped[str | None] = mapped_column(String(255))
    release_reason: Mapped[str | None] = mapped_column(Text)
    release_expires: Mapped[datetime | None] = mapped_column(UTCDateTime())
    held_by: Mapped[str | None] = mapped_column(String(255))
    """Set by an admin's re-quarantine: re-scans do not lift it, only a release does."""
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    trigger: Mapped[str | None] = mapped_column(Text)
    """What made the latest decision: None for a verification, ``advisory-import (data version
    N)`` or ``policy-change (...)`` for a re-evaluation from stored data."""
    origin: Mapped[str] = mapped_column(String(64), server_default="local")
    """Where the image comes from, for the choice of its policy: ``local``, or the name of the
    remote the registry fetched it from (``config.remotes.origin_of``, kept current with the
    settings at each start)."""
    pushed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """It was pushed through the gatekeeper (so its origin is ``local``, whatever remote
    serves its repository)."""


class VerdictEvent(Base):
    """Append-only history of verdict changes and admin actions on one image."""

    __tablename__ = "verdict_events"
    __table_args__ = (
        Index("ix_verdict_events_image", "repository", "digest", "id"),
        Index("ix_verdict_events_time", "time"),  # the console's chart (migration 0018)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(140))
    event: Mapped[str] = mapped_column(String(32))
    old_state: Mapped[str | None] = mapped_column(String(16))
    new_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)


class FindingRow(Base):
    """Findings of the latest completed verification of an image."""

    __tablename__ = "findings"
    __table_args__ = (
        Index("ix_findings_image", "repository", "digest"),
        # The pull gate asks for a blob's findings of blocking severities: an index range.
        Index("ix_findings_blob", "blob", "severity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(140))
    verifier: Mapped[str] = mapped_column(String(100))
    rule_id: Mapped[str] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)
    fix: Mapped[str | None] = mapped_column(String(255))
    """``verifiers.base.Finding.fix``: fixed version, "" when none is known, None if n/a."""
    blob: Mapped[str | None] = mapped_column(String(140))
    """The layer or config that carries the finding (None: about the manifest as a whole). A
    blob's own findings follow it into every manifest that references it."""
    origin: Mapped[str | None] = mapped_column(String(400))
    """``repository@digest`` of the image whose verification found it, when this image only
    inherited it through a shared blob; None for the image's own findings."""


class ContentHold(Base):
    """A blob an admin's hold covers: the held image's config, and each layer no pullable image
    had when the hold was made. Every manifest that references it inherits the hold, in any
    repository, until the held image is released."""

    __tablename__ = "content_holds"
    __table_args__ = (Index("ix_content_holds_image", "repository", "digest"),)

    blob: Mapped[str] = mapped_column(String(140), primary_key=True)
    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    """The held image."""
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Job(Base):
    """A persisted unit of background work, claimed with a lease so a crash never loses it."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "state", "run_after"),
        Index("ix_jobs_image", "repository", "digest", "state"),
        # The fair claim groups queued jobs by identity and repository from this index alone
        # (``storage.jobs``): it covers every column the grouping reads.
        Index("ix_jobs_fair", "state", "identity", "repository", "run_after", "priority"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(140))
    reason: Mapped[str] = mapped_column(Text)
    identity: Mapped[str] = mapped_column(String(255), server_default="gatekeeper:unattributed")
    """Who caused the job: the pushing identity, or a named cause (``gatekeeper:rescan``...);
    workers are shared fairly between identities (``storage.jobs.claim``)."""
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    """0, or 1 while a pull waits for this image's verdict (``storage.jobs.expedite``)."""
    state: Mapped[str] = mapped_column(String(16))  # queued|running|done|dead
    attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobTurn(Base):
    """When an identity (``repository`` empty), or one repository of it, last had a job
    claimed: the claim serves the least recently served first."""

    __tablename__ = "job_turns"

    identity: Mapped[str] = mapped_column(String(255), primary_key=True)
    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    served_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LayerResult(Base):
    """A layer verifier's outcome for one layer digest, shared by every image that has it."""

    __tablename__ = "layer_results"

    layer_digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    verifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event owed to one webhook; it outlives restarts until delivered or given up.

    ``webhook`` is a hash of the receiver's URL, never the URL itself (URLs often carry a
    token). The body is stored as the exact bytes sent, so every retry is signed over the same
    payload and a receiver can deduplicate by the CloudEvents ``id``.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "webhook", name="uq_webhook_deliveries_event"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookAttempt(Base):
    """One try at sending a delivery: when, the receiver's status or the error, how long."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class ImageInventoryRow(Base):
    """When an image's package inventory was taken, and the distribution it runs."""

    __tablename__ = "image_inventories"

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    os_id: Mapped[str | None] = mapped_column(String(64))
    os_version_id: Mapped[str | None] = mapped_column(String(64))
    os_codename: Mapped[str | None] = mapped_column(String(64))
    os_pretty_name: Mapped[str | None] = mapped_column(String(255))
    package_count: Mapped[int] = mapped_column(Integer)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ImagePackage(Base):
    """One package in an image's final filesystem. Indexed by package so that new advisories
    find the affected images without reading any layer again."""

    __tablename__ = "image_packages"
    __table_args__ = (
        # Covers re-evaluation's filter (is the package named by an advisory?), so the
        # database reads only the matching rows of an image, not all of them.
        Index(
            "ix_image_packages_image", "repository", "digest", "ecosystem", "name", "source_name"
        ),
        Index("ix_image_packages_name", "ecosystem", "name"),
        Index("ix_image_packages_source", "ecosystem", "source_name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(140))
    ecosystem: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(255))
    purl: Mapped[str] = mapped_column(Text)
    layer: Mapped[str] = mapped_column(String(140))
    path: Mapped[str] = mapped_column(Text)
    source_name: Mapped[str | None] = mapped_column(String(255))
    source_version: Mapped[str | None] = mapped_column(String(255))
    """Debian source version when it differs from the binary's (binNMU); OSV matches on it."""
    arch: Mapped[str | None] = mapped_column(String(32))


class AdvisoryDataVersion(Base):
    """One advisory import; a verdict records the version it was matched against."""

    __tablename__ = "advisory_data_versions"

    version: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    added: Mapped[int] = mapped_column(Integer)
    updated: Mapped[int] = mapped_column(Integer)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When the images this import affects were re-evaluated (or queued); None while that is
    owed, e.g. after the importing process died between its commit and the re-evaluation."""


class AdvisoryRow(Base):
    """One OSV record, kept whole (``raw``) so matching can be re-derived after an upgrade."""

    __tablename__ = "advisories"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    modified: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_version: Mapped[int] = mapped_column(BigInteger)
    """The import that last wrote this record."""


class AdvisoryPackage(Base):
    """One ``affected[]`` entry, indexed by (ecosystem, name): the lookup an image package
    makes, and the set an import hands to re-evaluation."""

    __tablename__ = "advisory_packages"
    __table_args__ = (Index("ix_advisory_packages_name", "ecosystem", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    advisory_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("advisories.id", ondelete="CASCADE")
    )
    ecosystem: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))


class RescanRun(Base):
    """One full re-verification pass over the stored images (scheduled or by hand). The cursor
    is the last (repository, digest) queued, moved in the same transaction as the jobs it
    queued, so a run resumes after a crash without skipping or repeating an image."""

    __tablename__ = "rescan_runs"
    __table_args__ = (
        # At most one running run cluster-wide, whatever the replicas race on.
        Index(
            "uq_rescan_runs_running",
            "state",
            unique=True,
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(String(16))
    """``schedule`` or ``manual``."""
    requested_by: Mapped[str] = mapped_column(String(255))
    pattern: Mapped[str | None] = mapped_column(String(255))
    """Repository glob (``*``, ``?``) the run is limited to; None: every repository."""
    state: Mapped[str] = mapped_column(String(16))
    """``running``, ``done`` or ``cancelled``."""
    total: Mapped[int] = mapped_column(Integer)
    """Images matching when the run started (images pushed later may add to ``queued``)."""
    queued: Mapped[int] = mapped_column(Integer)
    spread_seconds: Mapped[float] = mapped_column(Float)
    cursor_repository: Mapped[str | None] = mapped_column(String(255))
    cursor_digest: Mapped[str | None] = mapped_column(String(140))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)
    """Why it ended early (who cancelled it)."""


class SchedulerMark(Base):
    """When a periodic task is next due, shared by every replica."""

    __tablename__ = "scheduler_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SchedulerLease(Base):
    """SQLite's stand-in for PostgreSQL's advisory lock: who runs the scheduler, until when."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AdvisoryMirror(Base):
    """Conditional-request validators of one mirror URL, so no replica downloads an archive
    it (or another replica) already imported. Keyed by the URL's SHA-256: the URL itself may
    carry a token and is stored only without query and credentials."""

    __tablename__ = "advisory_mirrors"

    url_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_url: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    imported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data_version: Mapped[int | None] = mapped_column(BigInteger)
    """The advisory data version the last download became."""
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    """Failed syncs in a row (0 after a success)."""


class UploadOwner(Base):
    """One row per identity that has held an upload session. Updating it is the lock that
    serialises that identity's reservations, on every replica (see ``storage.uploads``)."""

    __tablename__ = "upload_owners"

    owner: Mapped[str] = mapped_column(String(255), primary_key=True)
    touched: Mapped[datetime] = mapped_column(UTCDateTime())


class UploadSession(Base):
    """An open blob upload session, recorded once the upstream opened it."""

    __tablename__ = "upload_sessions"
    __table_args__ = (
        Index("ix_upload_sessions_owner", "owner", "last_seen"),
        Index("ix_upload_sessions_session", "repository", "session"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(255))
    repository: Mapped[str] = mapped_column(String(255))
    session: Mapped[str | None] = mapped_column(String(128))
    """The upstream's upload id (None only in rows of versions that reserved a slot before
    asking the upstream; such a row counts until it goes idle)."""
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    replica: Mapped[str | None] = mapped_column(String(64))
    """The replica that served the session's latest request; once it is gone (``Replica``)
    the session stops counting against its owner's cap. None: made before replicas were
    tracked, counted until idle."""


class Replica(Base):
    """A running gatekeeper process, as long as it keeps saying so (``proxy.presence``):
    what it holds (upload sessions) is let go when it stops or falls silent."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
