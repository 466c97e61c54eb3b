"""Following the upstream's redirects to object storage, for reads the gatekeeper makes itself.

A registry whose storage is S3 (or any S3-compatible store, with ``redirect`` on) answers a blob
GET or HEAD with a ``307`` to a presigned URL of the object store. A client follows it; the
gatekeeper follows it for its verification reads, and for clients' blob GETs only when
``blob_redirects = "proxy"`` (clients that cannot reach the store). Either way:

- the presigned URL carries its own authorisation, so nothing of the upstream's credentials
  goes to it: no ``Authorization`` header, no cookies, no user info in the URL; the only header
  sent on is the ``Range`` the read asked for;
- the URL is used exactly as given (its signature covers the encoded query), over http or https,
  at most :data:`MAX_HOPS` redirects deep;
- the body is streamed like any upstream body (the caller bounds it), on the same pooled session
  with the same connect and read timeouts (``upstream_timeout_seconds``);
- a store that cannot be reached is an :class:`~oci.errors.OCIError` that names the object
  storage, not the registry, so the operator looks in the right place.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from yarl import URL

from oci.errors import Code, OCIError
from upstream.client import Guarded, Upstream

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_HOPS = 5
"""Redirects followed for one read; a presigned URL is one hop, a store's own region redirect
another."""
SENT_ON = frozenset({"range"})
"""The request headers a redirect target gets (lower case)."""
STORE = "the registry's object storage"
"""How errors name the redirect target."""


def redirect_target(resp: aiohttp.ClientResponse) -> URL | None:
    """Where ``resp`` redirects to, resolved against the URL that answered; None when it is
    not a redirect. A redirect to anything but an http(s) URL is a bad gateway."""
    location = resp.headers.get("Location")
    if resp.status not in REDIRECTS or not location:
        return None
    target = resp.url.join(URL(location, encoded=True))
    if target.scheme not in ("http", "https") or not target.host:
        raise OCIError(
            Code.UPSTREAM_BAD_GATEWAY,
            "the upstream registry redirected to a URL the gatekeeper cannot follow",
            {"scheme": target.scheme},
        )
    if target.user is not None or target.password is not None:
        # aiohttp would turn user info into an Authorization header: send none.
        target = target.with_user(None)
    return target


async def follow(
    session: aiohttp.ClientSession,
    first: aiohttp.ClientResponse,
    *,
    method: str,
    headers: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """The final answer to a read whose first answer is ``first``: ``first`` itself unless it
    redirects, else (``first`` released) what the redirect targets answer, each asked with
    ``method`` and only the headers of :data:`SENT_ON` from ``headers``. The caller releases
    the response it gets."""
    sent = {k: v for k, v in (headers or {}).items() if k.lower() in SENT_ON}
    resp = first
    for _ in range(MAX_HOPS):
        target = _target_or_release(resp)
        if target is None:
            return resp
        resp.release()
        resp = await Guarded(
            session.request(
                method, target, headers=sent, allow_redirects=False, auto_decompress=False
            ),
            STORE,
        )
    if _target_or_release(resp) is None:
        return resp
    resp.release()
    raise OCIError(
        Code.UPSTREAM_BAD_GATEWAY,
        f"{STORE} redirected more than {MAX_HOPS} times",
        {"max_hops": MAX_HOPS},
    )


def _target_or_release(resp: aiohttp.ClientResponse) -> URL | None:
    try:
        return redirect_target(resp)
    except OCIError:
        resp.release()
        raise


async def read(
    upstream: Upstream,
    method: str,
    path: str,
    *,
    scopes: tuple[str, ...],
    headers: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """``method`` on the upstream's ``path`` (with its credentials), following its redirects
    to object storage (without them); the caller releases the response."""
    first = await upstream.request(method, path, scopes=scopes, headers=headers)
    return await follow(upstream.session, first, method=method, headers=headers)


def from_store(upstream: URL, resp: aiohttp.ClientResponse) -> bool:
    """Whether ``resp`` came from somewhere else than the upstream (a followed redirect)."""
    return resp.url.origin() != upstream.origin()
