"""Keyset positions in links: the key of the last row shown, as URL-safe base64 of JSON.

A cursor is only a position, not a permission: whatever it says, the page is still read
within the reader's repositories and filters. One that does not decode to the expected shape
is a 400, never a server error."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from proxy.admin.errors import AdminCode, AdminError


def encode(key: tuple[Any, ...]) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str | None, shape: tuple[type, ...]) -> tuple[Any, ...] | None:
    """The key in ``token`` whose items have the types of ``shape`` (``datetime`` from ISO
    text), or None for no token."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(shape):
            raise ValueError("wrong length")
        return tuple(_typed(v, kind) for v, kind in zip(values, shape, strict=True))
    except (ValueError, binascii.Error, TypeError, OverflowError) as exc:
        raise AdminError(AdminCode.BAD_REQUEST, "the page link is damaged: start again") from exc


def _typed(value: Any, kind: type) -> Any:
    if kind is datetime:
        moment = datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            raise ValueError("no zone")
        return moment
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str) and len(value) <= 400:
        return value
    raise ValueError(f"expected {kind.__name__}")
