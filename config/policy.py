"""The policy schema: which checks an image must pass, per repository pattern and origin.

Policies are data, validated at start-up like every other setting. Matching is by repository
glob, most specific pattern first (fewest wildcards, then longest), among the policies that
admit the image's origin (``config.remotes``: pushed here, or fetched from a named remote); a
policy that names the origin wins over one that admits every origin. A repository no policy
matches is denied, so forgetting a policy can never mean "allow".
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Literal, Self

from packageurl import PackageURL
from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from config.remotes import LOCAL, check_origin_name, check_patterns, specificity
from config.text import PlainText
from verifiers.signatures.keys import KeyFormatError, PublicKey
from verifiers.vex.model import MAX_BYTES as VEX_MAX_BYTES
from verifiers.vex.model import Document, VexError
from verifiers.vex.model import parse as vex_parse

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Waiver(BaseModel):
    """An accepted finding: it no longer blocks, within its scope and until it expires."""

    model_config = {"extra": "forbid", "frozen": True}

    finding: str = Field(min_length=1)
    """A rule id (``CVE-2024-1``) or ``verifier:rule`` (``config-sanity:config.no-user``)."""
    repositories: list[str] = Field(default_factory=lambda: ["*"])
    reason: PlainText = Field(min_length=1)
    author: PlainText = Field(min_length=1)
    expires: datetime | None = None
    digests: list[str] = Field(default_factory=list)
    """Only these images (manifest digests); empty: every image in ``repositories``. A VEX
    statement about an image makes such a waiver."""
    packages: list[str] = Field(default_factory=list)
    """Only findings about these packages (purls, ``pkg:pypi/cryptography@38.0.4``); empty:
    every finding of the rule. A VEX statement about a package makes such a waiver."""

    @field_validator("digests")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if not DIGEST.fullmatch(digest):
                raise ValueError(f"{digest!r} is not a sha256 manifest digest")
        return value

    @field_validator("packages")
    @classmethod
    def _purls(cls, value: list[str]) -> list[str]:
        for purl in value:
            if not purl.startswith("pkg:") or len(purl) > 1000:
                raise ValueError(f"{purl!r} is not a package URL (pkg:type/name@version)")
            try:
                PackageURL.from_string(purl)
            except ValueError as exc:
                raise ValueError(f"{purl!r} is not a package URL ({exc})") from exc
        return value

    @property
    def narrowed(self) -> bool:
        """Limited to some images or packages: not a rule waived for a whole repository."""
        return bool(self.digests or self.packages)


class VexTrust(BaseModel):
    """Which VEX documents the policy's images accept, and for how long (``[policies.vex]``)."""

    model_config = {"extra": "forbid", "frozen": True}

    keys: list[str] = Field(default_factory=list)
    """PEM public keys (``cosign.pub``) whose signed VEX referrers of an image (cosign's
    in-toto attestation with predicate type ``https://openvex.dev/ns``) are believed. A VEX
    referrer signed by any other key, or unsigned, changes nothing."""
    key_files: list[Path] = Field(default_factory=list)
    documents: list[Path] = Field(default_factory=list)
    """OpenVEX files that apply to the policy's repositories (read at start-up)."""
    expire_days: float | None = Field(default=None, gt=0)
    """A VEX waiver lapses this many days after its statement's time; unset, it does not."""

    _keys: tuple[PublicKey, ...] = PrivateAttr(default=())
    _documents: tuple[tuple[str, Document], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _load(self) -> Self:
        keys = []
        for index, pem in enumerate(self.keys):
            keys.append(_key(pem.encode(), f"keys.{index}"))
        for index, path in enumerate(self.key_files):
            keys.append(_key(_read(path, f"key_files.{index}"), f"key_files.{index}"))
        docs = []
        for index, path in enumerate(self.documents):
            try:
                docs.append((str(path), vex_parse(_read(path, f"documents.{index}"))))
            except VexError as exc:
                raise ValueError(f"documents.{index}: {path}: {exc}") from exc
        self._keys, self._documents = tuple(keys), tuple(docs)
        return self

    @property
    def trusted_keys(self) -> tuple[PublicKey, ...]:
        return self._keys

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(k.key_id for k in self._keys)

    @property
    def parsed_documents(self) -> tuple[tuple[str, Document], ...]:
        """(path, document) of each settings-file document."""
        return self._documents


def _read(path: Path, where: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(VEX_MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {path}: {exc.strerror}") from exc
    if len(data) > VEX_MAX_BYTES:
        raise ValueError(f"{where}: {path} is larger than {VEX_MAX_BYTES} bytes")
    return data


def _key(pem: bytes, where: str) -> PublicKey:
    try:
        return PublicKey.from_pem(pem)
    except KeyFormatError as exc:
        raise ValueError(f"{where}: {exc}") from exc


class VerifierPolicy(BaseModel):
    """How one verifier's outcome counts for images under this policy."""

    model_config = {"extra": "forbid", "frozen": True}

    on_error: Literal["fail", "pass"] = "fail"
    """``fail`` (fail closed): an error quarantines. ``pass``: the error is logged and ignored."""
    unfixed: Literal["block", "report"] = "block"
    """Findings about a package version with no known fix (``vulnerabilities``): ``block`` like
    any other finding at or above the threshold, or only ``report`` them (recorded on the
    verdict, never blocking), for teams that act only on what an upgrade can remove."""


DEFAULT_ARTIFACT_TYPES: tuple[str, ...] = (
    # cosign: signatures (the ``.sig`` tag's layers, and OCI 1.1 referrers), attestations
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.dsse.envelope.v1+json",
    # Sigstore bundles
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    # in-toto attestations
    "application/vnd.in-toto+json",
    # SBOMs: SPDX, CycloneDX, syft
    "text/spdx",
    "text/spdx+json",
    "text/spdx+xml",
    "application/spdx+json",
    "application/vnd.cyclonedx",
    "application/vnd.cyclonedx+json",
    "application/vnd.cyclonedx+xml",
    "application/vnd.syft+json",
    # OpenVEX
    "application/vnd.openvex+json",
    # Notary Project signatures
    "application/vnd.cncf.notary.signature",
)
"""Artifact types pulled without image verification unless a policy lists others. Each is a
document *about* an image (a signature, an attestation, an SBOM, a VEX statement); a manifest
declaring one is still verified as an image when its content is one (see ``verifiers.classify``).
"""


class Policy(BaseModel):
    """One policy. ``require`` empty plus ``mode = enforce`` still needs a verifier result:
    an image passes only when every required verifier ran and nothing blocks."""

    model_config = {"extra": "forbid", "frozen": True}

    name: str = Field(min_length=1, max_length=100)
    repositories: list[str] = Field(min_length=1)
    """Glob patterns (``team/*``, ``*``) matched against the full repository name."""
    origins: list[str] = Field(default_factory=list)
    """Where the images it applies to come from: ``local`` (pushed here) and the names of
    ``[[remotes]]``; empty, every origin. A policy naming an image's origin wins over any that
    does not, whatever their repository patterns."""
    mode: Literal["enforce", "warn"] = "enforce"
    """``warn``: findings are logged and reported, the image is never blocked."""
    require: list[str] = Field(default_factory=list)
    """Verifiers that must run and pass; only these run on the policy's images (an enabled
    verifier no policy requires is not run there, and adds no findings)."""
    severity_threshold: Literal["info", "low", "medium", "high", "critical"] = "high"
    """Findings at or above this severity block the image."""
    waivers: list[Waiver] = Field(default_factory=list)
    pending: Literal["block", "hold"] = "hold"
    """While verification is running: ``block`` at once, or ``hold`` the pull up to
    ``hold_seconds`` waiting for the verdict, then block."""
    hold_seconds: float = Field(default=30.0, ge=0, le=600)
    verifiers: dict[str, VerifierPolicy] = Field(default_factory=dict)
    on_new_findings: Literal["quarantine", "notify"] = "quarantine"
    """When an image that already passed (or was released) gets new blocking findings from
    re-evaluation (an advisory import, a policy change) or a re-verification (a rescan, the
    periodic run): ``quarantine`` it, or only
    ``notify`` (the verdict records the findings, an ``image.new-findings`` webhook fires, the
    image stays pullable). A verifier error or a missing required verifier still quarantines."""
    deny_all: bool = False
    """An explicit "nothing is pullable" policy (the default for unmatched repositories)."""
    artifact_types: list[str] = Field(default_factory=lambda: list(DEFAULT_ARTIFACT_TYPES))
    """Artifact types that may be pulled without image verification: a manifest of one of these
    types whose blobs hold no image content (no tar, gzip or zstd stream, no image config, no
    blob ever seen in an image) passes on its own. Any other manifest is verified as an image,
    or denied when it holds nothing an image verifier could check. A label alone never skips
    a check: the type is what the pusher wrote, so the content must agree with it."""
    index_signatures_cover_children: bool = True
    """A valid signature on an index also signs the platform images it lists (cosign signs the
    index digest; a client then fetches one child by digest)."""
    vex: VexTrust | None = None
    """VEX documents this policy accepts (``[policies.vex]``); unset, only those an admin
    adds over the API."""

    @field_validator("repositories")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        return check_patterns(value)

    @field_validator("origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for name in value:
            check_origin_name(name)
        if len(set(value)) != len(value):
            raise ValueError("each origin may appear only once")
        return value

    @property
    def version(self) -> str:
        """A short content hash: verdicts record which version of a policy decided them.
        ``origins``, ``vex`` and a waiver's ``digests`` and ``packages`` count only when set,
        so policies written before they existed keep their version (and their verdicts are
        not all decided again on the upgrade)."""
        content = self.model_dump(mode="json")
        if not content["origins"]:
            del content["origins"]
        if content["vex"] is None:
            del content["vex"]
        for waiver in content["waivers"]:
            for narrowing in ("digests", "packages"):
                if not waiver[narrowing]:
                    del waiver[narrowing]
        canonical = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:16]

    def admits(self, origin: str) -> bool:
        """Whether it may apply to an image of ``origin``."""
        return not self.origins or origin in self.origins


DENY_UNMATCHED = Policy(name="(no matching policy)", repositories=["*"], deny_all=True)


def match_policy(policies: list[Policy], repository: str, origin: str = LOCAL) -> Policy:
    """The policy for an image of ``repository`` from ``origin``: among the policies admitting
    the origin, one naming it first, then the most specific matching pattern, then the earlier
    in the file; DENY_UNMATCHED when none matches."""
    best: tuple[bool, tuple[int, int], int, Policy] | None = None
    for index, policy in enumerate(policies):
        if not policy.admits(origin):
            continue
        for pattern in policy.repositories:
            if fnmatch.fnmatchcase(repository, pattern):
                key = (bool(policy.origins), specificity(pattern), -index, policy)
                if best is None or key[:3] > best[:3]:
                    best = key
    return best[3] if best else DENY_UNMATCHED
