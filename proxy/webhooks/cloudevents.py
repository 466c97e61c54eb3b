"""Verdict changes as CloudEvents 1.0 (structured JSON), and the signature on each request.

Pure functions: no I/O, no clock of their own (the caller passes the time), so the exact bytes
and headers are easy to test and to reproduce in a receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from config.settings import Settings
from services.events import EVENT_TYPES, VerdictChange

CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_SOURCE = "registry-gatekeeper"
SIGNATURE_HEADER = "X-Gatekeeper-Signature"
TIMESTAMP_HEADER = "X-Gatekeeper-Timestamp"
DELIVERY_HEADER = "X-Gatekeeper-Delivery"
EVENT_HEADER = "X-Gatekeeper-Event"
USER_AGENT = "registry-gatekeeper-webhooks/1"


@dataclass(frozen=True)
class CloudEvent:
    """One event, serialised once: every webhook and every retry sends these exact bytes."""

    id: str
    """CloudEvents ``id``, a UUID; receivers deduplicate retries by it."""
    type: str
    """``image.quarantined``, ``image.passed``, ``image.released``, ``image.requarantined`` or
    ``image.new-findings``."""
    subject: str
    """``REPOSITORY@DIGEST``."""
    body: str
    """The structured-mode JSON document."""


def event_source(settings: Settings) -> str:
    """CloudEvents ``source``: the gatekeeper's public URL when one is set."""
    return str(settings.public_url).rstrip("/") if settings.public_url else DEFAULT_SOURCE


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_cloud_event(change: VerdictChange, source: str) -> CloudEvent | None:
    """The CloudEvent for a verdict change; None for bus events webhooks do not carry
    (``warned``, ``rescan-requested``, ...)."""
    event_type = EVENT_TYPES.get(change.event)
    if event_type is None:
        return None
    event_id = str(uuid.uuid4())
    subject = f"{change.repository}@{change.digest}"
    document = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": rfc3339(change.time),
        "datacontenttype": "application/json",
        "data": {
            "repository": change.repository,
            "digest": change.digest,
            "old_state": change.old_state,
            "new_state": change.new_state,
            "actor": change.actor,
            "reason": change.reason,
            "policy": change.policy,
        },
    }
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return CloudEvent(event_id, event_type, subject, body)


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 over ``b"<timestamp>." + body`` keyed with the secret."""
    mac = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: bytes, timestamp: str, body: bytes, header: str, now: float, tolerance: float = 300
) -> bool:
    """What a receiver does: recompute in constant time, and refuse stale timestamps."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header)


def request_headers(
    secret: bytes, body: bytes, delivery_id: int, event_type: str, now: float
) -> dict[str, str]:
    """Headers of one attempt; each attempt is signed afresh with its own timestamp."""
    timestamp = int(now)
    return {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        DELIVERY_HEADER: str(delivery_id),
        EVENT_HEADER: event_type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
