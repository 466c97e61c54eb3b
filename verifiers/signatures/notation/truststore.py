"""Notation's trust store on disk: ``<root>/x509/<type>/<name>/`` holding root certificates.

The layout is Notation's own, so a directory made with ``notation cert add`` can be used as it
is. As the specification requires, a named store or certificate file that is a symbolic link is
refused, sub-directories are ignored, and files end in ``.pem``, ``.crt`` or ``.cer`` (PEM or
DER, one or more certificates each). Stores are read once at start-up; an error names the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from verifiers.signatures.errors import SignatureConfigError

EXTENSIONS = (".pem", ".crt", ".cer")


@dataclass(frozen=True)
class NamedStore:
    """One named store: ``ca:acme-rockets`` and its certificates."""

    kind: str
    name: str
    certificates: tuple[x509.Certificate, ...]

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def load_store(root: Path, reference: str) -> NamedStore:
    """Read ``{type}:{name}`` under ``root``; raises SignatureConfigError naming the problem."""
    kind, _, name = reference.partition(":")
    directory = root / "x509" / kind / name
    if directory.is_symlink():
        raise SignatureConfigError(f"trust store {reference}: {directory} is a symbolic link")
    if not directory.is_dir():
        raise SignatureConfigError(f"trust store {reference}: {directory} is not a directory")
    certificates: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if path.is_dir() or path.suffix.lower() not in EXTENSIONS:
            continue
        if path.is_symlink():
            raise SignatureConfigError(f"trust store {reference}: {path} is a symbolic link")
        certificates += _read(path, reference)
    if not certificates:
        raise SignatureConfigError(f"trust store {reference}: no certificate in {directory}")
    for cert in certificates:
        if not _ca_or_self_signed(cert):
            raise SignatureConfigError(
                f"trust store {reference}: {cert.subject.rfc4514_string()} is neither a CA "
                "certificate nor self-signed"
            )
    return NamedStore(kind, name, tuple(certificates))


def _read(path: Path, reference: str) -> list[x509.Certificate]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SignatureConfigError(
            f"trust store {reference}: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    try:
        if b"-----BEGIN" in raw:
            return x509.load_pem_x509_certificates(raw)
        return [x509.load_der_x509_certificate(raw)]
    except ValueError as exc:
        raise SignatureConfigError(
            f"trust store {reference}: {path} is not a PEM or DER certificate ({exc})"
        ) from exc


def _ca_or_self_signed(cert: x509.Certificate) -> bool:
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
