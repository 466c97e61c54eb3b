"""Where an upload session ends, as the registry says it: the byte the next chunk must start at.

The registry's status answer (``GET /v2/<name>/blobs/uploads/<uuid>``) carries
``Range: 0-<last byte>``, which is ``0-0`` both for an empty upload and for one holding a single
byte, so the spec's "next byte" cannot be read from it alone. The ``Location`` of the same
answer carries Distribution's upload state (``_state``): base64url of an HMAC-SHA256 (32 bytes)
followed by JSON whose ``Offset`` is the upload's size. That ``Location`` comes from the
registry in answer to the gatekeeper's own request, never from a client, so it is read without
checking the HMAC (whose key is the registry's ``http.secret``). When it cannot be read (another
registry, another layout), the ``Range`` alone decides and 0 and 1 are both taken for an upload
that says ``0-0``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from yarl import URL

_RANGE = re.compile(r"0-([0-9]{1,18})")
_HMAC_BYTES = 32


def _state_offset(location: str | None) -> int | None:
    if not location:
        return None
    state = URL(location).query.get("_state")
    if not state:
        return None
    try:
        raw = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
        offset = json.loads(raw[_HMAC_BYTES:])["Offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


def next_bytes(location: str | None, range_header: str | None) -> tuple[int, ...] | None:
    """The byte offsets a chunk may start at: one when the registry's state says it, else
    what ``Range`` allows; None when neither is readable."""
    held = _RANGE.fullmatch((range_header or "").strip())
    offset = _state_offset(location)
    if held is None:
        return None if offset is None else (offset,)
    end = int(held[1])
    if offset is not None and (offset == end + 1 or offset == end == 0):
        return (offset,)  # the two agree
    return (0, 1) if end == 0 else (end + 1,)
