"""The JWS envelope (``application/jose+json``): RFC 7515 flattened JSON serialization.

``protected`` (base64url JSON) holds ``alg``, ``cty``, ``crit`` and the ``io.cncf.notary.*``
signed attributes (times as RFC 3339 strings); ``header`` holds ``x5c`` (base64 DER,
signing certificate first), the optional RFC 3161 ``io.cncf.notary.timestampSignature`` and the
signing agent. The signature covers ``ASCII(protected '.' payload)``; ECDSA signatures are
``r||s`` (RFC 7518).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from verifiers.signatures.notation.envelope import (
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
    NOTARY_HEADERS,
    SIGNING_AGENT,
    SIGNING_SCHEME,
    SIGNING_TIME,
    TIMESTAMP,
    Envelope,
    EnvelopeInvalid,
    check_headers,
    parse_certificates,
)

ALGORITHMS = frozenset({"PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
_STANDARD = frozenset({"alg", "cty", "crit"})


def parse(raw: bytes) -> Envelope:
    """Parse and check the envelope's form; the signature is checked later."""
    doc = _json(raw, "the envelope")
    if not isinstance(doc, dict):
        raise EnvelopeInvalid("the envelope is not a JSON object")
    protected_b64, payload_b64, signature_b64 = (
        _text(doc, key) for key in ("protected", "payload", "signature")
    )
    header = doc.get("header", {})
    if not isinstance(header, dict):
        raise EnvelopeInvalid("the unprotected header is not an object")
    protected = _json(_b64url(protected_b64, "protected"), "the protected header")
    if not isinstance(protected, dict):
        raise EnvelopeInvalid("the protected header is not an object")
    algorithm, content_type = protected.get("alg"), protected.get("cty")
    if algorithm not in ALGORITHMS:
        raise EnvelopeInvalid(f"unsupported alg {algorithm!r}")
    if not isinstance(content_type, str):
        raise EnvelopeInvalid("the protected header has no cty")
    critical = protected.get("crit")
    if critical is not None and not isinstance(critical, list):
        raise EnvelopeInvalid("crit is not a list")
    critical = critical or []
    times = {key: _time(protected, key) for key in (SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY)}
    check_headers(
        protected.get(SIGNING_SCHEME),
        critical,
        set(protected),
        times[SIGNING_TIME],
        times[AUTHENTIC_SIGNING_TIME],
        times[EXPIRY],
    )
    chain = header.get("x5c")
    if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
        raise EnvelopeInvalid("x5c is missing or not a list of base64 certificates")
    timestamp = header.get(TIMESTAMP)
    agent = header.get(SIGNING_AGENT)
    return Envelope(
        format="JWS",
        algorithm=algorithm,
        content_type=content_type,
        payload=_b64url(payload_b64, "payload"),
        signing_scheme=str(protected[SIGNING_SCHEME]),
        signing_time=times[SIGNING_TIME],
        authentic_signing_time=times[AUTHENTIC_SIGNING_TIME],
        expiry=times[EXPIRY],
        critical=tuple(critical),
        extended={k: v for k, v in protected.items() if k not in NOTARY_HEADERS | _STANDARD},
        certificates=parse_certificates([_b64(c, "x5c") for c in chain]),
        signature=_b64url(signature_b64, "signature"),
        signed=f"{protected_b64}.{payload_b64}".encode("ascii"),
        timestamp=_b64(timestamp, TIMESTAMP) if isinstance(timestamp, str) else None,
        signing_agent=agent if isinstance(agent, str) else None,
    )


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeInvalid(f"{what} is not JSON ({exc.__class__.__name__})") from exc


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.isascii():
        raise EnvelopeInvalid(f"the envelope has no {key}")
    return value


def _b64url(value: str, what: str) -> bytes:
    if "=" in value:
        raise EnvelopeInvalid(f"{what} is padded; JWS uses unpadded base64url")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeInvalid(f"{what} is not base64url ({exc})") from exc


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeInvalid(f"{what} is not base64 ({exc})") from exc


def _time(protected: dict[str, Any], key: str) -> datetime | None:
    value = protected.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EnvelopeInvalid(f"{key} is not an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EnvelopeInvalid(f"{key} is not an RFC 3339 time ({value!r})") from exc
    if moment.tzinfo is None:
        raise EnvelopeInvalid(f"{key} has no time zone")
    return moment
