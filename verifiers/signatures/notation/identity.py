"""Trusted identities: ``x509.subject: C=US, ST=WA, O=acme, CN=release`` against a certificate.

The Notary Project trust policy names a signer by (part of) its certificate's subject DN: every
attribute the identity lists must be in the subject with the same value; the subject may have
more. An identity must name at least the country (C), the state (ST or S) and the organisation
(O). Escapes as the specification gives them: ``\\,``, ``\\;``, ``\\\\`` and ``\\ `` for a
leading or trailing space.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from verifiers.signatures.errors import SignatureError

PREFIX = "x509.subject:"
_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
}
_ALIASES = {"S": "ST", "EMAILADDRESS": "E"}
_REQUIRED = ("C", "ST", "O")


class IdentityError(SignatureError, ValueError):
    """A trusted identity that cannot be parsed; the message says what is wrong."""


@dataclass(frozen=True)
class Identity:
    """A parsed ``x509.subject:`` identity: attribute name -> value."""

    text: str
    attributes: tuple[tuple[str, str], ...]

    def matches(self, subject: x509.Name) -> bool:
        have = subject_attributes(subject)
        return all(value in have.get(name, ()) for name, value in self.attributes)

    def overlaps(self, other: Identity) -> bool:
        """Some certificate could match both: they agree on every attribute they share."""
        mine, theirs = dict(self.attributes), dict(other.attributes)
        return all(mine[k] == theirs[k] for k in mine.keys() & theirs.keys())


def subject_attributes(subject: x509.Name) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for attribute in subject:
        name = _NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        found.setdefault(name, []).append(value)
    return {k: tuple(v) for k, v in found.items()}


def describe_subject(subject: x509.Name) -> str:
    """``C=US, ST=WA, O=acme`` in certificate order, as a trusted identity would be written."""
    return ", ".join(
        f"{k}={v}" for k, values in subject_attributes(subject).items() for v in values
    )


def parse_identity(text: str) -> Identity:
    if not text.startswith(PREFIX):
        raise IdentityError(f"a trusted identity starts with {PREFIX!r} (or is '*')")
    pairs: list[tuple[str, str]] = []
    for part in _split(text[len(PREFIX) :]):
        name, sep, value = part.partition("=")
        name = name.strip().upper()
        name = _ALIASES.get(name, name)
        if not sep or not name or not value:
            raise IdentityError(f"{part.strip()!r} is not NAME=value")
        if any(n == name for n, _ in pairs):
            raise IdentityError(f"{name} appears twice")
        pairs.append((name, value))
    missing = [n for n in _REQUIRED if n not in dict(pairs)]
    if missing:
        raise IdentityError(f"an identity must name C, ST (or S) and O; missing {missing}")
    return Identity(text, tuple(pairs))


def _split(body: str) -> list[str]:
    """Split on unescaped commas; unescape; strip unescaped spaces around each value."""
    parts: list[str] = []
    current: list[tuple[str, bool]] = []  # (character, escaped)
    chars = iter(body)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise IdentityError("a trailing backslash escapes nothing")
            current.append((escaped, True))
        elif char == ",":
            parts.append(_value(current))
            current = []
        else:
            current.append((char, False))
    parts.append(_value(current))
    return parts


def _value(chars: list[tuple[str, bool]]) -> str:
    """``NAME=value`` with unescaped spaces around the name and the value removed."""
    split = next((i for i, c in enumerate(chars) if c == ("=", False)), len(chars))
    name = "".join(c for c, _ in _strip(chars[:split]))
    value = "".join(c for c, _ in _strip(chars[split + 1 :]))
    return f"{name}={value}" if split < len(chars) else name


def _strip(chars: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    start, end = 0, len(chars)
    while start < end and chars[start] == (" ", False):
        start += 1
    while end > start and chars[end - 1] == (" ", False):
        end -= 1
    return chars[start:end]
