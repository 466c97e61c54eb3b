"""The one protocol every verifier implements, and the values it exchanges.

A verifier that crashed is not a verifier that found nothing: the pipeline turns exceptions and
timeouts into an ``error`` outcome, and the policy fails closed on it. A verifier that did not
look returns :class:`Skipped`, a value, not an exception; a skip is not a pass (the policy
counts a required verifier that skipped an image as not satisfied), unless it is an exemption
the verifier's own settings grant (``Skipped(exempt=True)``).

Verifiers do not decide whether an image is an image: the verification service classifies
every manifest from its content first (``verifiers.classify``) and hands verifiers only images
and indexes, never artifacts.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class Severity(enum.IntEnum):
    """Ordered so a policy threshold is a plain comparison."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str) -> Severity:
        try:
            return cls[value.strip().upper()]
        except KeyError as exc:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {value!r}; expected one of {names}") from exc


@dataclass(frozen=True)
class Finding:
    """One thing a verifier found wrong with an image."""

    verifier: str
    """Name of the verifier that produced it."""
    rule_id: str
    """Stable identifier of the rule (e.g. ``CVE-2024-1234``, ``config.no-user``); waivers and
    policies refer to findings by it."""
    severity: Severity
    title: str
    """One line a person understands."""
    location: str = ""
    """Where in the image: a layer digest and path, a config field."""
    evidence: str = ""
    """Supporting detail, with any secret already redacted by the verifier."""
    fix: str | None = None
    """For a finding about a package version: the first fixed version, ``""`` when no fix is
    known (a policy may let those through, ``unfixed = "report"``). None: not applicable."""
    blob: str | None = None
    """Digest of the layer or config that carries the finding (a secret in a file of that
    layer, a package whose database sits in it, the config's own user or environment); None for
    findings about the manifest as a whole (a missing signature). A blob's findings follow it
    into every manifest that lists it, whatever that manifest declares."""

    @property
    def finding_id(self) -> str:
        return f"{self.verifier}:{self.rule_id}"


@dataclass(frozen=True)
class Skipped:
    """The verifier did not check this image; the reason is recorded. Not a pass: a policy that
    requires this verifier does not let the image through on a skip."""

    reason: str
    exempt: bool = False
    """The skip is an exemption the verifier's settings grant on purpose (a signature rule with
    ``signed = false``): it counts as satisfied."""


@dataclass(frozen=True)
class Versioned:
    """Findings together with the version that produced them, for a verifier whose version
    depends on data read during the check (the advisory-data version): one instance serves
    concurrent verifications, so the version must travel with the result, not sit on it."""

    findings: list[Finding]
    version: str


class Noted(list[Finding]):
    """Findings (a list like any verifier's) with a note on what the check established beyond
    them (who signed an image that passed), kept as the outcome's detail for the admin API and
    the console. A list, so every caller that reads findings keeps working."""

    def __init__(self, findings: list[Finding], note: str) -> None:
        super().__init__(findings)
        self.note = note


@dataclass(frozen=True)
class Descriptor:
    """A blob or manifest the image manifest points at."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None


class BlobOpener(Protocol):
    """Streams a blob of one repository (the image's, or a :class:`RepositoryView`'s); a
    verifier never sees the whole blob at once."""

    def open(self, digest: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest as stored: exact bytes (signatures are over bytes), type and digest."""

    digest: str
    media_type: str
    body: bytes


class ManifestFetcher(Protocol):
    """Reads other manifests of one repository (a cosign ``sha256-<hex>.sig`` tag, a referrer).
    Returns None when there is no such manifest; the digest is checked."""

    async def fetch(self, reference: str) -> FetchedManifest | None: ...


class _NoManifests:
    async def fetch(self, reference: str) -> FetchedManifest | None:
        return None


@dataclass(frozen=True)
class RepositoryView:
    """One repository of the registry, read-only, as seen from one image: the image's own, or
    another one such as cosign's ``COSIGN_REPOSITORY``, which keeps the image's signatures apart
    from it. Its readers check digests and enforce size limits as the image's own do."""

    name: str
    manifests: ManifestFetcher
    blobs: BlobOpener
    referrers: tuple[Descriptor, ...] = field(default_factory=tuple)
    """Artifacts stored in *this* repository whose ``subject`` is the image, from the
    gatekeeper's own referrers index (as :attr:`Image.referrers` is for the image's own)."""
    referrer_types: tuple[str | None, ...] = field(default_factory=tuple)


class RepositoryOpener(Protocol):
    """Opens another repository for reading, with the referrers there of ``subject``."""

    async def open(self, repository: str, subject: str) -> RepositoryView: ...


class _NoRepositories:
    async def open(self, repository: str, subject: str) -> RepositoryView:
        raise VerifierError(
            f"cannot read repository {repository}: this image gives no access to other repositories"
        )


@dataclass(frozen=True)
class Image:
    """What a verifier gets: the manifest, its parsed config, and a way to read blobs. It is
    always an image or an index (``children`` non-empty, or ``is_index``), never an artifact:
    the service classified it from its content before any verifier runs."""

    repository: str
    digest: str
    media_type: str
    manifest: dict[str, Any]
    config: dict[str, Any] | None
    """Parsed image config; None for an index, or when the config could not be read (too
    large, not a JSON object: ``config_problem`` says why, and the image fails on it)."""
    layers: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]
    """Platform manifests of an index (empty for an image)."""
    blobs: BlobOpener
    referrers: tuple[Descriptor, ...] = field(default_factory=tuple)
    """Artifacts (signatures, SBOMs) whose ``subject`` is this image, from the gatekeeper's
    own referrers index; each descriptor's ``media_type`` is the referrer manifest's type and
    ``platform`` is unused. Their artifact types are in ``referrer_types``."""
    referrer_types: tuple[str | None, ...] = field(default_factory=tuple)
    manifests: ManifestFetcher = field(default_factory=_NoManifests)
    repositories: RepositoryOpener = field(default_factory=_NoRepositories)
    """Other repositories of the registry (a signature repository); none unless given."""
    config_descriptor: Descriptor | None = None
    """The manifest's config descriptor (None for an index)."""
    config_problem: str | None = None
    """Why ``config`` is None for an image: the config could not be read."""
    covering_indexes: tuple[str, ...] = ()
    """Digests of indexes of this repository that list this image and whose signatures also
    sign it (the policy's ``index_signatures_cover_children``)."""
    is_index: bool = False
    """An index (its ``children`` are its platform images), even one that lists none."""

    @property
    def config_digest(self) -> str | None:
        return self.config_descriptor.digest if self.config_descriptor else None

    def own_repository(self) -> RepositoryView:
        """The image's own repository as a view: where its signatures are by default."""
        return RepositoryView(
            self.repository, self.manifests, self.blobs, self.referrers, self.referrer_types
        )

    async def repository_view(self, name: str) -> RepositoryView:
        """Read repository ``name`` (this image's own, or another) with this image's referrers
        there; another repository goes through ``repositories``, so its reads keep the same
        digest checks and limits."""
        if name == self.repository:
            return self.own_repository()
        return await self.repositories.open(name, self.digest)


@runtime_checkable
class Verifier(Protocol):
    """A check. ``version`` changes whenever the same input could give a different result, so
    cached results from older versions are not reused."""

    name: str
    version: str

    async def verify(self, image: Image) -> list[Finding] | Versioned | Skipped: ...


def index_skip(image: Image) -> Skipped | None:
    """The one "does this verifier apply?" test: a verifier that checks images, not indexes,
    skips an index (its platform images are verified on their own, and the index is pullable
    only while they are). The pipeline does not even ask such verifiers about an index (see
    ``checks_indexes``); this guards direct calls."""
    if image.is_index or image.children:
        return Skipped("an index: its platform images are verified on their own")
    return None


class VerifierError(Exception):
    """Base for errors a verifier raises deliberately (bad configuration, unreadable input)."""


class SourceUnavailable(VerifierError):
    """The registry, or the object storage it redirects to, could not be read: unreachable,
    too slow to answer, failed mid-stream, or answered with a server error. Nothing was learnt
    about the content, so this is no verifier's result: the pipeline marks the outcome
    ``unavailable`` and the verification service retries the job instead of deciding (after
    its last attempt the image gets a failure verdict saying the verification could not
    complete). Raise it only for such failures, never for what the content is."""
