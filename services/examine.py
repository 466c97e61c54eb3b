"""What a manifest's content is and what it depends on, established before any verifier runs.

A manifest is only a list of digests with labels the pusher chose. Before the verifiers see it,
the verification service asks here, from the content and the gatekeeper's own history:

- what it is (``verifiers.classify``: image, index, artifact, or refused), reading the first
  bytes of the blobs whose labels claim they are not image layers;
- whether its config can be read at all (an image whose config cannot be is quarantined, not
  skipped);
- whether an admin's hold covers any of its blobs (the hold follows held content into any
  manifest);
- what other images found about its blobs (their findings follow the blobs);
- what it depends on: an index is pullable only while its platform images are, an artifact only
  while the image it is about is.

The answers become the built-in ``content`` outcome (``content.*`` findings, always critical, so
they block under every threshold) and the ``history`` outcome (inherited findings), which the
policy decides on like any verifier's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import Policy
from oci.manifests import ManifestRecord
from services.facts import Facts
from services.facts import blobs as blobs_of
from services.stored_outcomes import HELD, HISTORY
from storage import content, jobs, manifests
from storage.content import BlobFinding, Hold
from upstream.client import Upstream, v2_path
from upstream.reads import ACCEPT, UpstreamBlobs
from verifiers import lifecycle
from verifiers.base import Finding, Severity
from verifiers.classify import (
    CONTENT,
    MAX_CONFIG_BYTES,
    SNIFF_BYTES,
    Classification,
    Kind,
    classify,
    declared_artifact_type,
    is_image_config,
    parse_config,
    sniff,
)
from verifiers.lifecycle import State
from verifiers.pipeline import Outcome

VERSION = "2"
"""Of the content examination; changes when the same content could be judged otherwise
(2: an artifact carrying a blob of an image in its repository is verified as an image)."""

INDEX = Classification(Kind.INDEX, None, "an index: each platform image is verified")
Submit = Callable[[str, str, str], Awaitable[None]]
"""Queue a verification of (repository, digest) for a reason."""
StoredBlob = Callable[[str, str, int], bytes | None]
"""A blob of (repository, digest) of at most so many bytes from the registry's mounted storage,
checked against its digest; None when it cannot say (``proxy.registry_files.blob``)."""


@dataclass(frozen=True)
class Fetched:
    """A manifest as the upstream serves it, parsed and indexed."""

    record: ManifestRecord
    doc: dict[str, Any]
    about: str | None
    """The image it is about: its ``subject``, or the digest of the cosign tag it was pushed
    under (``manifests.about_digest``)."""


@dataclass(frozen=True)
class Examined:
    """What the content examination established."""

    classification: Classification
    config: dict[str, Any] | None = None
    config_problem: str | None = None
    findings: tuple[Finding, ...] = ()
    """``content.*`` findings."""
    waiting: tuple[str, ...] = ()
    """What it waits for before it can be decided (children or subject being verified)."""
    held: bool = False
    """An admin's hold on another image covers some of its content."""
    inherited: tuple[BlobFinding, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> Kind:
        return self.classification.kind

    def outcome(self) -> Outcome:
        return Outcome(CONTENT, VERSION, "ok", self.findings, self.classification.why)


def _finding(rule: str, title: str, location: str = "") -> Finding:
    """A ``content.*`` finding. It belongs to this manifest only (no ``blob``): what a
    manifest depends on or how it uses a blob says nothing of the blob elsewhere."""
    rule_id = rule if rule.startswith("content.") else f"content.{rule}"
    return Finding(CONTENT, rule_id, Severity.CRITICAL, title, location)


class Examiner:
    """Establishes :class:`Examined` for one manifest at a time (see the module docstring)."""

    def __init__(
        self,
        upstream: Upstream,
        db: async_sessionmaker[Any],
        submit: Submit,
        stored: StoredBlob | None = None,
    ) -> None:
        """``stored``: where the config is read first, without a round trip to the registry
        (the same bytes: both are checked against the digest the manifest lists)."""
        self._upstream = upstream
        self._db = db
        self._submit = submit
        self._stored = stored

    async def examine(self, fetched: Fetched, policy: Policy, facts: Facts) -> Examined:
        """``facts``: what the database knows of its blobs (``services.facts``), read by the
        caller with the rest of what the verification weighs."""
        record = fetched.record
        if record.config_digest is None:
            found = Examined(INDEX)
        else:
            found = await self._image_like(fetched, policy)
        found = _holds(fetched, found, facts.holds)
        found = await self._dependencies(fetched, found)
        if found.kind != Kind.INDEX:
            found = _with(found, inherited=facts.inherited)
        return found

    async def _image_like(self, fetched: Fetched, policy: Policy) -> Examined:
        """Classify a manifest with a config: read the config, and if the labels claim an
        artifact, sniff its blobs and look up their history."""
        record = fetched.record
        blobs = UpstreamBlobs(self._upstream, record.repository)
        config_ref = next(r for r in record.refs if r.kind == "config")
        layers = [r for r in record.refs if r.kind == "layer"]
        config, problem = parse_config(await self._config(blobs, config_ref.digest))
        raw_type = fetched.doc.get("artifactType")
        declared = declared_artifact_type(
            raw_type if isinstance(raw_type, str) else None,
            config_ref.media_type,
            [layer.media_type for layer in layers],
        )
        archives: dict[str, str] = {}
        seen: set[str] = set()
        imaged: dict[str, str] = {}
        if declared is not None:
            # The labels say "not an image": only the content may confirm that.
            suspects = [layer.digest for layer in layers]
            if config is None:
                suspects.append(config_ref.digest)
            for digest in dict.fromkeys(suspects):
                kind = sniff(await blobs.head(digest, SNIFF_BYTES))
                if kind:
                    archives[digest] = kind
            async with self._db() as session:
                seen = await content.with_findings(session, blobs_of(record))
                imaged = await content.in_images(
                    session, record.repository, blobs_of(record), besides=record.digest
                )
        classification = classify(
            is_index=False,
            declared=declared,
            archives=archives,
            image_config=is_image_config(config),
            seen=seen,
            in_images=imaged,
            allowed=policy.artifact_types,
            policy=policy.name,
        )
        findings: list[Finding] = []
        if classification.kind == Kind.REFUSED:
            findings.append(_finding("artifact-type-refused", classification.why))
        elif classification.kind == Kind.IMAGE and problem is not None:
            findings.append(
                _finding(
                    "config-unreadable",
                    f"the image config {config_ref.digest} cannot be read: {problem}",
                    "config",
                )
            )
        return Examined(classification, config, problem, tuple(findings))

    async def _config(self, blobs: UpstreamBlobs, digest: str) -> bytes | None:
        """The config's bytes (None if larger than ``MAX_CONFIG_BYTES``)."""
        if self._stored is not None:
            data = self._stored(blobs.repository, digest, MAX_CONFIG_BYTES)
            if data is not None:
                return data
        return await blobs.read(digest, MAX_CONFIG_BYTES)

    async def _dependencies(self, fetched: Fetched, found: Examined) -> Examined:
        """An index waits for, and is blocked by, its platform images; an artifact by the
        image it is about. Only what is present in this repository counts."""
        record = fetched.record
        findings = list(found.findings)
        waiting = list(found.waiting)
        if found.kind == Kind.INDEX:
            children = [r for r in record.refs if r.kind == "manifest"]
            for child in dict.fromkeys(c.digest for c in children):
                platform = next(c.platform for c in children if c.digest == child)
                label = f"platform image {child}" + (
                    f" ({_platform(platform)})" if platform else ""
                )
                await self._depend(record, child, label, "child-not-pullable", findings, waiting)
        if fetched.about is not None and fetched.about != record.digest:
            label = f"the image it is about, {fetched.about},"
            await self._depend(
                record, fetched.about, label, "subject-not-pullable", findings, waiting
            )
        return _with(found, findings=tuple(findings), waiting=tuple(waiting))

    async def _depend(
        self,
        record: ManifestRecord,
        digest: str,
        label: str,
        rule: str,
        findings: list[Finding],
        waiting: list[str],
    ) -> None:
        # Whether it is being verified again is read before its verdict: its job is finished
        # in the transaction that stores its verdict, so a job no longer active here means
        # the verdict read next is what it came to (read the other way round, on PostgreSQL,
        # where each statement sees what was committed before it, a verdict from before and
        # no job could both be read, with the job finished in between).
        async with self._db() as session:
            again = await jobs.active(session, record.repository, digest)
            known = await content.states(session, record.repository, [digest])
            indexed = await manifests.get_manifest(session, record.repository, digest)
        state = known.get(digest)
        if state is None:
            if indexed is None and not await self._present(record.repository, digest):
                return  # not in this repository: nothing to depend on
            reason = f"listed by {record.repository}@{record.digest}"
            await self._submit(record.repository, digest, reason)
            waiting.append(f"{label} is still being verified")
            return
        current, expires, reasons = state
        effective = lifecycle.effective(current, expires)
        if effective == State.PENDING:
            waiting.append(f"{label} is still being verified")
        elif effective not in lifecycle.PULLABLE and again:
            # A signature pushed for it is being checked (it may pass): wait for that rather
            # than refuse, so a client pulling this right after it sees a hold, not a 403.
            waiting.append(f"{label} is {effective} and being verified again")
        elif effective not in lifecycle.PULLABLE:
            why = "; ".join(reasons[:2]) or "verification failed"
            title = f"{label} is {effective}: {why}"
            findings.append(_finding(rule, title[:1000], digest))

    async def _present(self, repository: str, digest: str) -> bool:
        async with await self._upstream.request(
            "HEAD",
            v2_path(repository, "manifests", digest),
            scopes=(f"repository:{repository}:pull",),
            headers={"Accept": ACCEPT},
        ) as resp:
            return resp.status == 200


def _holds(fetched: Fetched, found: Examined, holds: Sequence[Hold]) -> Examined:
    """An admin's hold on another image follows its content into this manifest."""
    record = fetched.record
    others = [h for h in holds if (h.repository, h.digest) != (record.repository, record.digest)]
    if not others:
        return found
    first = others[0]
    title = lifecycle.inherited_hold_reason(first.holder, first.actor, first.reason)
    return _with(found, findings=(*found.findings, _finding(HELD, title, first.blob)), held=True)


def _with(found: Examined, **changes: Any) -> Examined:
    return replace(found, **changes)


def _platform(platform: dict[str, Any]) -> str:
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(p) for p in parts if p)


def inherited_outcome(
    inherited: Sequence[BlobFinding], own: Sequence[Finding]
) -> tuple[Outcome, list[tuple[Finding, str]]] | None:
    """Findings other images made about this manifest's blobs that its own verifiers did not
    make (keyed by verifier, rule, location and blob), as the ``history`` outcome, each with the
    image it came from. None when there are none."""
    mine = {(f.verifier, f.rule_id, f.location, f.blob) for f in own}
    chosen: dict[tuple[str, str, str, str | None], tuple[Finding, str]] = {}
    for item in inherited:
        record = item.finding
        key = (record.verifier, record.rule_id, record.location, record.blob)
        if key in mine or key in chosen:
            continue
        try:
            severity = Severity.parse(record.severity)
        except ValueError:
            severity = Severity.CRITICAL  # unreadable: fail closed
        finding = Finding(
            record.verifier,
            record.rule_id,
            severity,
            record.title,
            record.location,
            record.evidence,
            record.fix,
            record.blob,
        )
        chosen[key] = (finding, f"{item.repository}@{item.digest}")
    if not chosen:
        return None
    findings = tuple(f for f, _ in chosen.values())
    detail = f"{len(findings)} finding(s) other images made about its blobs"
    return Outcome(HISTORY, VERSION, "ok", findings, detail), list(chosen.values())


def outcome_kind(outcomes: Sequence[dict[str, Any]]) -> str | None:
    """The stored kind of a verdict's content outcome (None: decided before it existed)."""
    for stored in outcomes:
        if stored.get("verifier") == CONTENT:
            kind = stored.get("kind")
            return str(kind) if kind else None
    return None
