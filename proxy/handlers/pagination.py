"""The ``n``/``last`` query parameters shared by tag and catalog listings."""

from __future__ import annotations

from aiohttp import web

from oci.errors import Code, OCIError

MAX_PAGE = 10_000


def page_params(request: web.Request) -> tuple[int | None, str | None]:
    """Validated ``n`` (0..MAX_PAGE) and ``last``; absent values are None."""
    raw_n = request.query.get("n")
    n: int | None = None
    if raw_n is not None:
        # isascii: str.isdigit() accepts '²', which int() then rejects.
        if not (raw_n.isascii() and raw_n.isdigit()) or len(raw_n) > 6 or int(raw_n) > MAX_PAGE:
            raise OCIError(
                Code.PAGINATION_INVALID,
                f"n must be an integer from 0 to {MAX_PAGE}",
                {"n": raw_n[:20]},
            )
        n = int(raw_n)
    last = request.query.get("last")
    if last is not None and (len(last) > 300 or any(c in last for c in "\r\n\x00")):
        raise OCIError(Code.PAGINATION_INVALID, "last is not a valid name", {"last": last[:50]})
    return n, last
