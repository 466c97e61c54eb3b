"""Whether a blob GET's ``Range`` header can be served, decided before any byte moves.

Both ways a blob leaves must answer an unsatisfiable range alike, with a clean 416 and
``Content-Range: bytes */<size>`` (RFC 9110, 15.5.17). The sendfile path (aiohttp's
``FileResponse``) does; the registry behind the streamed path does not: Distribution 2.8 sends
``Content-Length`` of the whole blob on its 416 and then a short text body, which the
gatekeeper could only relay as a broken transfer. So the gatekeeper decides the 416 itself,
from the blob's size, with the rules both servers apply:

- the header must be ``bytes=`` and a comma-separated list of ``first-last``, ``first-`` or
  ``-suffix`` (digits only, ``first <= last``); anything else is refused (Go's ``ServeContent``
  and aiohttp both answer such a header 416 rather than ignore it);
- it is satisfiable when at least one range starts inside the blob (``first < size``), or asks
  for a non-empty suffix of a non-empty blob.

A header that passes is left to the server that sends the bytes.
"""

from __future__ import annotations

import re

_SPEC = re.compile(r"([0-9]{1,19})?-([0-9]{1,19})?")


def _spec_satisfiable(spec: str, size: int) -> bool | None:
    """True or False for a well-formed range spec, None for a malformed one."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None or (match[1] is None and match[2] is None):
        return None
    if match[1] is None:  # "-suffix": the last N bytes
        return int(match[2]) > 0 and size > 0
    first = int(match[1])
    if match[2] is not None and int(match[2]) < first:
        return None
    return first < size


def satisfiable(header: str, size: int) -> bool:
    """Whether a ``Range`` header names at least one byte of a blob of ``size`` bytes."""
    unit, sep, ranges = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return False
    answers = [_spec_satisfiable(spec, size) for spec in ranges.split(",") if spec.strip()]
    if not answers or None in answers:
        return False
    return any(answers)


def single(header: str) -> bool:
    """One range only: what a sendfile answer can serve (several need a multipart body)."""
    return "," not in header
