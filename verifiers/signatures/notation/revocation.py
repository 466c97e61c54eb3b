"""Revocation through CRL files the operator configures (``notation.crl_files``).

The gatekeeper fetches nothing at verification time: CRLs are read at start-up, and refreshed
by replacing the files and restarting (or reloading) it. For each certificate of the chain,
root first: a CRL counts only if it names the certificate's issuer and its signature verifies
with the issuer's key (the next certificate of the chain). Then, as the specification says:

* listed: revoked, unless an invalidity date later than the authentic signing time says the
  key was still good when it signed, or the reason is ``removeFromCRL``;
* not listed, CRL expired (``nextUpdate`` passed): revocation unknown;
* no CRL from that issuer, and the certificate names a CRL distribution point: revocation
  unknown (its issuer publishes one, and we do not have it);
* no CRL and no distribution point: not checked, as the specification prescribes.

Unknown and revoked are both failures of the ``revocation`` validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from verifiers.signatures.errors import SignatureConfigError, StepFailed


@dataclass(frozen=True)
class Crls:
    """The configured CRLs."""

    crls: tuple[x509.CertificateRevocationList, ...]

    @classmethod
    def load(cls, paths: Sequence[Path]) -> Crls:
        loaded = []
        for index, path in enumerate(paths):
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise SignatureConfigError(
                    f"notation.crl_files.{index}: cannot read {path}: {exc.strerror or exc}"
                ) from exc
            try:
                loaded.append(
                    x509.load_pem_x509_crl(raw)
                    if b"-----BEGIN" in raw
                    else x509.load_der_x509_crl(raw)
                )
            except ValueError as exc:
                raise SignatureConfigError(
                    f"notation.crl_files.{index}: {path} is not a PEM or DER CRL ({exc})"
                ) from exc
        return cls(tuple(loaded))

    def check(
        self, chain: Sequence[x509.Certificate], now: datetime, signed_at: datetime | None
    ) -> str:
        """Raise StepFailed (``notation.revoked`` / ``notation.revocation-unknown``) or say
        what was checked."""
        checked = 0
        for index in reversed(range(len(chain))):
            cert = chain[index]
            issuer = chain[min(index + 1, len(chain) - 1)]
            crl = self._from(issuer, cert)
            if crl is None:
                if _has_distribution_point(cert):
                    raise StepFailed(
                        "notation.revocation-unknown",
                        f"{_name(cert)} names a CRL distribution point, but no configured CRL "
                        f"is signed by its issuer {_name(issuer)}",
                    )
                continue
            checked += 1
            _check_one(cert, crl, now, signed_at)
        if not checked:
            return "no CRL configured for this chain's issuers; none is published (not checked)"
        return f"{checked} certificate{'s' if checked != 1 else ''} checked, none revoked"

    def _from(
        self, issuer: x509.Certificate, cert: x509.Certificate
    ) -> x509.CertificateRevocationList | None:
        for crl in self.crls:
            if crl.issuer == cert.issuer and crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                return crl
        return None


def _check_one(
    cert: x509.Certificate,
    crl: x509.CertificateRevocationList,
    now: datetime,
    signed_at: datetime | None,
) -> None:
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None and not _harmless(entry, signed_at):
        raise StepFailed(
            "notation.revoked",
            f"{_name(cert)} (serial {cert.serial_number:x}) was revoked "
            f"{entry.revocation_date_utc:%Y-%m-%dT%H:%M:%SZ}",
        )
    next_update = crl.next_update_utc
    if entry is None and next_update is not None and next_update < now:
        raise StepFailed(
            "notation.revocation-unknown",
            f"the CRL of {_name_of(crl.issuer)} expired {next_update:%Y-%m-%dT%H:%M:%SZ}; "
            "replace the CRL file",
        )


def _harmless(entry: x509.RevokedCertificate, signed_at: datetime | None) -> bool:
    for ext in entry.extensions:
        value = ext.value
        if isinstance(value, x509.CRLReason) and value.reason is x509.ReasonFlags.remove_from_crl:
            return True
        if isinstance(value, x509.InvalidityDate) and signed_at is not None:
            return value.invalidity_date_utc > signed_at
    return False


def _has_distribution_point(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return False
    return True


def _name(cert: x509.Certificate) -> str:
    return _name_of(cert.subject)


def _name_of(name: x509.Name) -> str:
    return name.rfc4514_string() or "(empty subject)"
