"""The root of trust for keyless signatures and transparency-log proofs: a ``trusted_root.json``.

Either the Sigstore public-good root shipped inside the ``sigstore`` package (``public-good``),
or a private deployment's file. It is parsed twice on purpose: by ``sigstore`` (whose verifier
checks Sigstore bundles) and into the small view below, which the cosign-layout checks use
(Fulcio certificates and log keys with their validity windows), so those checks need no private
``sigstore`` API.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from sigstore.models import TrustedRoot
from sigstore_models.trustroot import v1 as trustroot_v1

from verifiers.signatures.errors import SignatureError
from verifiers.signatures.keys import KeyFormatError, PublicKey

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
    """Parsed ``trusted_root.json``."""

    source: str
    sigstore: TrustedRoot
    logs: tuple[LogKey, ...]
    authorities: tuple[Authority, ...]

    @classmethod
    def load(cls, where: str) -> TrustRoot:
        """``public-good`` or a path to a ``trusted_root.json``."""
        if where == PUBLIC_GOOD:
            ref = resources.files("sigstore._store").joinpath(*_PUBLIC_GOOD_FILE)
            return cls.from_json(ref.read_bytes(), "the Sigstore public-good instance")
        path = Path(where)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TrustRootError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return cls.from_json(raw, str(path))

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> TrustRoot:
        try:
            doc = json.loads(raw)
            parsed = TrustedRoot(trustroot_v1.TrustedRoot.from_json(raw))
        except Exception as exc:  # sigstore raises pydantic and its own errors alike
            raise TrustRootError(f"{source} is not a valid trusted root: {exc}") from exc
        try:
            logs = tuple(_log_key(entry) for entry in doc.get("tlogs") or [])
            authorities = tuple(
                _authority(entry) for entry in doc.get("certificateAuthorities") or []
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TrustRootError(f"{source}: unusable entry ({exc})") from exc
        return cls(source, parsed, logs, authorities)

    def log_key(self, log_id: bytes) -> LogKey | None:
        return next((log for log in self.logs if log.log_id == log_id), None)

    def fulcio_certificates(self) -> list[x509.Certificate]:
        """Every CA certificate, expired ones too: a certificate is checked at signing time."""
        return [cert for authority in self.authorities for cert in authority.certificates]


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
