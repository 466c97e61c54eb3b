"""The root of trust for keyless signatures and transparency-log proofs: a ``trusted_root.json``.

Either the Sigstore public-good root shipped inside the ``sigstore`` package (``public-good``),
or a private deployment's file. It is parsed twice on purpose: by ``sigstore`` (whose verifier
checks Sigstore bundles) and into the small view below, which the cosign-layout checks use
(Fulcio certificates and log keys with their validity windows), so those checks need no private
``sigstore`` API.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from verifiers.signatures.errors import SignatureError
from verifiers.signatures.keys import KeyFormatError, PublicKey

if TYPE_CHECKING:
    from sigstore.models import TrustedRoot

PUBLIC_GOOD = "public-good"
_PUBLIC_GOOD_FILE = ("https%3A%2F%2Ftuf-repo-cdn.sigstore.dev", "trusted_root.json")


class TrustRootError(SignatureError, ValueError):
    """The trusted root cannot be used; the message says which part is wrong."""


@dataclass(frozen=True)
class Window:
    """A closed validity interval; an open end means "still valid"."""

    start: datetime | None
    end: datetime | None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and (
            self.end is None or moment <= self.end
        )


@dataclass(frozen=True)
class LogKey:
    """A transparency log's signing key, found by its log id."""

    log_id: bytes
    key: PublicKey
    valid: Window


@dataclass(frozen=True)
class Authority:
    """A certificate authority standing for Fulcio: its chain, leaf-most first."""

    certificates: tuple[x509.Certificate, ...]
    valid: Window


@dataclass(frozen=True)
class TrustRoot:
    """Parsed ``trusted_root.json``.

    ``sigstore``'s own parse of it (:attr:`sigstore`) is made when a bundle is first verified,
    not at start: importing ``sigstore`` and its models costs about a second of CPU, paid by
    every server start and every CLI command that never sees a bundle. A file an operator
    names is still parsed by ``sigstore`` at load, so a bad one stops the start; the
    public-good root ships inside ``sigstore`` itself."""

    source: str
    raw: bytes = field(repr=False)
    logs: tuple[LogKey, ...]
    authorities: tuple[Authority, ...]

    @functools.cached_property
    def sigstore(self) -> TrustedRoot:
        """The root as ``sigstore``'s verifier takes it."""
        return _sigstore_root(self.raw, self.source)

    @classmethod
    def load(cls, where: str) -> TrustRoot:
        """``public-good`` or a path to a ``trusted_root.json``."""
        if where == PUBLIC_GOOD:
            ref = resources.files("sigstore._store").joinpath(*_PUBLIC_GOOD_FILE)
            return cls.from_json(ref.read_bytes(), "the Sigstore public-good instance", now=False)
        path = Path(where)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TrustRootError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return cls.from_json(raw, str(path))

    @classmethod
    def from_json(cls, raw: bytes, source: str, *, now: bool = True) -> TrustRoot:
        """``now=False`` leaves ``sigstore``'s parse to first use (a root known to be good)."""
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise TrustRootError(f"{source} is not a valid trusted root: {exc}") from exc
        try:
            logs = tuple(_log_key(entry) for entry in doc.get("tlogs") or [])
            authorities = tuple(
                _authority(entry) for entry in doc.get("certificateAuthorities") or []
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TrustRootError(f"{source}: unusable entry ({exc})") from exc
        root = cls(source, raw, logs, authorities)
        if now:
            root.sigstore  # noqa: B018 (parsed now so that a bad file stops the start)
        return root

    def log_key(self, log_id: bytes) -> LogKey | None:
        return next((log for log in self.logs if log.log_id == log_id), None)

    def fulcio_certificates(self) -> list[x509.Certificate]:
        """Every CA certificate, expired ones too: a certificate is checked at signing time."""
        return [cert for authority in self.authorities for cert in authority.certificates]


def _sigstore_root(raw: bytes, source: str) -> TrustedRoot:
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot import v1 as trustroot_v1

    try:
        return TrustedRoot(trustroot_v1.TrustedRoot.from_json(raw))
    except Exception as exc:  # sigstore raises pydantic and its own errors alike
        raise TrustRootError(f"{source} is not a valid trusted root: {exc}") from exc


def _window(valid_for: Any) -> Window:
    valid_for = valid_for or {}
    return Window(_time(valid_for.get("start")), _time(valid_for.get("end")))


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _log_key(entry: dict[str, Any]) -> LogKey:
    public = entry["publicKey"]
    try:
        key = PublicKey.from_der(base64.b64decode(public["rawBytes"]))
    except KeyFormatError as exc:
        raise ValueError(f"log {entry.get('baseUrl')}: {exc}") from exc
    log_id = base64.b64decode(entry["logId"]["keyId"])
    return LogKey(log_id, key, _window(public.get("validFor")))


def _authority(entry: dict[str, Any]) -> Authority:
    certs = tuple(
        x509.load_der_x509_certificate(base64.b64decode(cert["rawBytes"]))
        for cert in entry["certChain"]["certificates"]
    )
    return Authority(certs, _window(entry.get("validFor")))
