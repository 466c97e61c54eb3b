"""The COSE envelope (``application/cose``): a tagged ``COSE_Sign1`` (RFC 9052, tag 18).

Protected header: ``1`` (alg: -37/-38/-39 PS256/384/512, -7/-35/-36 ES256/384/512), ``2``
(crit), ``3`` (content type) and the ``io.cncf.notary.*`` signed attributes, times as CBOR
tag-1 epoch dates. Unprotected header: ``33`` (x5chain, DER, signing certificate first), the
optional RFC 3161 ``io.cncf.notary.timestampSignature`` and the signing agent. The signature
covers ``Sig_structure = ["Signature1", protected, h'', payload]``; ECDSA signatures are
``r||s``. Decoded with ``cbor2``, the one CBOR codec we depend on (it may hand back arrays as
tuples and maps as read-only mappings, so both are accepted); COSE itself is small enough to
check here, step by step, rather than through a COSE library.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import cbor2

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

SIGN1_TAG = 18
ALG, CRIT, CONTENT_TYPE, X5CHAIN = 1, 2, 3, 33
ALGORITHMS = {-37: "PS256", -38: "PS384", -39: "PS512", -7: "ES256", -35: "ES384", -36: "ES512"}
_STANDARD = frozenset({ALG, CRIT, CONTENT_TYPE})


def parse(raw: bytes) -> Envelope:
    """Parse and check the envelope's form; the signature is checked later."""
    message = _cbor(raw, "the envelope")
    if not isinstance(message, cbor2.CBORTag) or message.tag != SIGN1_TAG:
        raise EnvelopeInvalid("the envelope is not a tagged COSE_Sign1 message")
    parts = message.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise EnvelopeInvalid("COSE_Sign1 is not [protected, unprotected, payload, signature]")
    protected_raw, unprotected, payload, signature = parts
    if not isinstance(protected_raw, bytes) or not protected_raw:
        raise EnvelopeInvalid("the protected header is not a non-empty byte string")
    if not isinstance(unprotected, Mapping):
        raise EnvelopeInvalid("the unprotected header is not a map")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise EnvelopeInvalid("the payload (detached?) or signature is not a byte string")
    protected = _cbor(protected_raw, "the protected header")
    if not isinstance(protected, Mapping):
        raise EnvelopeInvalid("the protected header is not a map")
    algorithm = ALGORITHMS.get(protected.get(ALG))  # type: ignore[arg-type]
    if algorithm is None:
        raise EnvelopeInvalid(f"unsupported alg {protected.get(ALG)!r}")
    content_type = protected.get(CONTENT_TYPE)
    if not isinstance(content_type, str):
        raise EnvelopeInvalid("the content type is missing or not text")
    critical = protected.get(CRIT)
    if critical is not None and not isinstance(critical, list | tuple):
        raise EnvelopeInvalid("crit is not a list")
    critical = list(critical or [])
    times = {key: _time(protected, key) for key in (SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY)}
    names = {k for k in protected if isinstance(k, str)}
    check_headers(
        protected.get(SIGNING_SCHEME),
        critical,
        names,
        times[SIGNING_TIME],
        times[AUTHENTIC_SIGNING_TIME],
        times[EXPIRY],
    )
    timestamp, agent = unprotected.get(TIMESTAMP), unprotected.get(SIGNING_AGENT)
    return Envelope(
        format="COSE",
        algorithm=algorithm,
        content_type=content_type,
        payload=payload,
        signing_scheme=str(protected[SIGNING_SCHEME]),
        signing_time=times[SIGNING_TIME],
        authentic_signing_time=times[AUTHENTIC_SIGNING_TIME],
        expiry=times[EXPIRY],
        critical=tuple(str(c) for c in critical),
        extended={str(k): v for k, v in protected.items() if k not in NOTARY_HEADERS | _STANDARD},
        certificates=parse_certificates(_chain(unprotected.get(X5CHAIN))),
        signature=signature,
        signed=cbor2.dumps(["Signature1", protected_raw, b"", payload]),
        timestamp=timestamp if isinstance(timestamp, bytes) else None,
        signing_agent=agent if isinstance(agent, str) else None,
    )


def _cbor(raw: bytes, what: str) -> Any:
    try:
        return cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, RecursionError, OverflowError) as exc:
        raise EnvelopeInvalid(f"{what} is not CBOR ({exc.__class__.__name__})") from exc


def _chain(value: Any) -> list[bytes]:
    """x5chain is one byte string for a single certificate, else an array of them."""
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, bytes) for v in value):
        return list(value)
    raise EnvelopeInvalid("x5chain is missing or not DER certificates")


def _time(protected: Mapping[Any, Any], key: str) -> datetime | None:
    value = protected.get(key)
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise EnvelopeInvalid(f"{key} is not a CBOR date (tag 1)")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
