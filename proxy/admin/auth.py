"""Who may use the admin API: an identity holding the ``admin``, ``auditor`` or
``quarantine-reader`` role on some repositories (Basic credentials or a token from the
gatekeeper's token endpoint; what each role allows where is ``proxy.auth.rights``), or whoever
presents the break-glass admin token from settings, which is a global admin.

The token is compared in constant time (``hmac.compare_digest``) so response timing reveals
nothing about how much of a guess was right. An unset or empty token disables the admin API
outright: every request is refused with a message saying so, rather than anything being
reachable without credentials. The token itself never reaches a log, an audit row or a response.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from oci.errors import OCIError
from proxy.admin.access import NEED, RIGHTS, Need, admit
from proxy.admin.common import services
from proxy.admin.errors import AdminCode, AdminError
from proxy.auth.http import AUTH
from proxy.auth.rights import Rights
from proxy.auth.service import AuthError
from proxy.context import info
from proxy.errors import Handler
from proxy.names import check_digest, check_name

TOKEN_PRINCIPAL = "admin-token"
"""The identity recorded for requests authenticated by the admin token."""
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gatekeeper-admin"'}


def token_matches(presented: str | None, expected: SecretStr | None) -> bool:
    """True only if an admin token is configured (non-empty) and ``presented`` equals it.

    Both sides are compared as UTF-8 bytes so a non-ASCII guess is a mismatch, not a TypeError,
    and the comparison time does not depend on where the first differing byte is.
    """
    if expected is None or presented is None:
        return False
    secret = expected.get_secret_value()
    if not secret:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8"))


def bearer_token(request: web.Request) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


async def authenticate(request: web.Request) -> Rights:
    """The principal making the request and its rights, or AdminError saying what is
    missing. Whether the rights suffice for the route is :func:`proxy.admin.access.admit`'s
    question, asked by the middleware."""
    expected = services(request).settings.admin_token
    presented = bearer_token(request)
    if presented is not None and token_matches(presented, expected):
        return Rights.unlimited(TOKEN_PRINCIPAL)
    auth = request.config_dict.get(AUTH)
    header = request.headers.get("Authorization")
    token_configured = expected is not None and bool(expected.get_secret_value())
    if auth is not None and header:
        try:
            who = await auth.from_header(header, request.remote or "unknown")
        except AuthError as exc:
            if exc.throttled:
                raise AdminError(AdminCode.TOO_MANY_REQUESTS, exc.reason) from exc
            raise AdminError(AdminCode.UNAUTHORIZED, exc.reason, headers=CHALLENGE) from exc
        if who.anonymous:
            raise AdminError(AdminCode.FORBIDDEN, "an anonymous token may not use the admin API")
        return Rights.from_bindings(who.name, who.bindings)
    if not token_configured and auth is None:
        raise AdminError(
            AdminCode.ADMIN_API_DISABLED,
            "the admin API is disabled: no admin token is configured "
            "(set admin_token in the settings file or GATEKEEPER_ADMIN_TOKEN)",
            headers=CHALLENGE,
        )
    if header is None:
        raise AdminError(
            AdminCode.UNAUTHORIZED,
            "authentication required: log in as an admin or send "
            "'Authorization: Bearer <admin token>'",
            headers=CHALLENGE,
        )
    raise AdminError(AdminCode.UNAUTHORIZED, "the admin token is not valid", headers=CHALLENGE)


def build_auth_middleware(needs: Mapping[str, Need]) -> Middleware:
    """``needs`` maps each route name to what it needs (``proxy.admin.routes``)."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate before routing errors are shown, so unknown paths tell a stranger
        nothing. Each request's access-log row names the admin action, attempted or done."""
        record = info(request)
        record.action = request.match_info.route.name or "admin.unknown"
        who = await authenticate(request)
        record.identity = who.principal
        need = needs.get(record.action, Need.READ)
        try:
            admit(who, need, record.action)
        except AdminError:
            _note_target(request)
            raise
        request[RIGHTS], request[NEED] = who, need
        return await handler(request)

    return auth_middleware


def _note_target(request: web.Request) -> None:
    """Put the image a refused request named on its access-log row (when the path names one
    validly), so a refusal is found by digest like the action it stopped."""
    info_ = request.match_info
    repository, _, digest = info_.get("reference", "").rpartition("@")
    repository, digest = info_.get("name", repository), info_.get("digest", digest)
    try:
        checked = check_name(repository), check_digest(digest)
    except OCIError:
        return
    record = info(request)
    record.repository, record.digest = checked
