"""The HTTP face of authentication: the middleware that guards every route, the challenges
docker, podman and skopeo understand, and the token endpoint they call.

Each route declares what it needs (``proxy.routes.ACCESS``); the middleware resolves the
caller, checks the repository named in the path and refuses with the right status:
401 + ``WWW-Authenticate`` when credentials are missing or bad (so clients start the token
dance), 401 with ``error="insufficient_scope"`` for a token lacking the scope, 403 ``DENIED``
for Basic callers without permission, 429 for throttled logins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from oci.errors import Code, OCIError
from proxy.auth.service import ANONYMOUS, AuthError, AuthService, Caller
from proxy.context import RequestInfo, info
from proxy.errors import Handler
from proxy.forward import public_base
from proxy.hostheader import quoted
from proxy.names import check_name

log = logging.getLogger("gatekeeper.auth")

AUTH: web.AppKey[AuthService] = web.AppKey("auth", AuthService)
CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)

# What a route needs. A tuple means "any of these actions on the path's repository".
LOGIN = "login"  # any authenticated caller (or an anonymous *token*): GET /v2/
CATALOG = "catalog"  # authenticated; results filtered by pull permission
ADMIN = "admin"
OPEN = "open"  # health, metrics, the token endpoint


def caller(request: web.Request) -> Caller:
    return request.get(CALLER) or ANONYMOUS


def _public(request: web.Request) -> str:
    from proxy.state import services

    configured = services(request).settings.public_url
    return str(public_base(request, str(configured) if configured else None))


def _challenge(request: web.Request, scope: str | None, error: str | None = None) -> str:
    """The Bearer challenge; every value an escaped quoted-string, whatever it holds."""
    params = {
        "realm": f"{_public(request)}/auth/token",
        "service": request.app[AUTH].settings.service,
        "scope": scope,
        "error": error,
    }
    return "Bearer " + ",".join(f'{k}="{quoted(v)}"' for k, v in params.items() if v)


def _scope(name: str | None, need: tuple[str, ...]) -> str | None:
    if name is None:
        return None
    actions = ",".join(sorted({"pull", *need} if "push" in need else set(need)))
    return f"repository:{name}:{actions}"


def refuse_login(record: RequestInfo, exc: AuthError) -> None:
    """Record a failed authentication (the reason, never the credential); a throttled one is
    answered at once with 429 and ``Retry-After``."""
    record.decision = "deny"
    record.reason = f"authentication failed: {exc.reason}"
    if exc.throttled:
        raise OCIError(
            Code.TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            None,
            headers={"Retry-After": str(max(1, round(exc.throttled)))},
        ) from exc


def unauthorized(
    request: web.Request, message: str, scope: str | None, error: str | None = None
) -> OCIError:
    return OCIError(
        Code.UNAUTHORIZED,
        message,
        None,
        headers={"WWW-Authenticate": _challenge(request, scope, error)},
    )


def build_auth_middleware(
    access: dict[Any, Any],
    actions: dict[Any, str],
    extra_scopes: dict[Any, Callable[[web.Request], tuple[str, ...]]] | None = None,
) -> Any:
    """``access`` maps each route handler to what it needs, ``actions`` (method, handler) to
    the access-log action of a refused request, ``extra_scopes`` a handler to the scopes its
    challenge names beside the path's repository (see ``proxy.routes``)."""
    extra_scopes = extra_scopes or {}

    def scope_of(request: web.Request, name: str | None, wanted: tuple[str, ...]) -> str | None:
        extra = extra_scopes.get(request.match_info.handler)
        more = extra(request) if extra is not None else ()
        return " ".join(s for s in (_scope(name, wanted), *more) if s) or None

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = access.get(request.match_info.handler, OPEN)
        if need == OPEN or AUTH not in request.app:
            return await handler(request)
        service = request.app[AUTH]
        record = info(request)
        record.action = actions.get((request.method, request.match_info.handler), record.action)
        name = request.match_info.get("name")
        if name is not None:
            record.repository = check_name(name)
        wanted = need if isinstance(need, tuple) else ()
        address = request.remote or "unknown"
        try:
            who = await service.from_header(request.headers.get("Authorization"), address)
        except AuthError as exc:
            refuse_login(record, exc)
            error = "invalid_token" if "token" in exc.reason else None
            raise unauthorized(request, exc.reason, scope_of(request, name, wanted), error) from exc
        request[CALLER] = who
        record.identity = who.name
        header = request.headers.get("Authorization", "")
        if need == LOGIN:
            if who.anonymous and who.token is None and not header:
                raise unauthorized(request, "authentication required", None)
            return await handler(request)
        if need == CATALOG:
            if who.anonymous:
                raise unauthorized(request, "authentication required", "registry:catalog:*")
            return await handler(request)
        if need == ADMIN:
            return await handler(request)  # the admin API checks its own role
        assert name is not None
        allowed = service.allowed(who, name)
        if any(action in allowed for action in wanted):
            return await handler(request)
        record.decision = "deny"
        record.reason = f"{who.name} may not {'/'.join(wanted)} {name}"
        raise _denied(request, who, name, wanted, scope_of(request, name, wanted))

    return auth_middleware


def _denied(
    request: web.Request, who: Caller, name: str, wanted: tuple[str, ...], scope: str | None
) -> OCIError:
    """The refusal of a caller without the access a repository path needs: a challenge for
    an anonymous caller, ``insufficient_scope`` for a bearer token, else ``DENIED``."""
    if who.anonymous and who.token is None:
        return unauthorized(request, "authentication required", scope)
    message = f"requested access to the resource is denied: {who.name} may not "
    message += f"{' or '.join(wanted)} {name}"
    if request.headers.get("Authorization", "").lower().startswith("bearer"):
        # As Distribution does: 401 + insufficient_scope, so clients ask the token endpoint
        # for the scope, and report the denial when the new token still lacks it.
        return insufficient_scope(
            request, message, scope, {"repository": name, "needed": list(wanted)}
        )
    return OCIError(Code.DENIED, message, {"repository": name, "needed": list(wanted)})


def insufficient_scope(
    request: web.Request, message: str, scope: str | None, detail: Any
) -> OCIError:
    """401 ``insufficient_scope``: the bearer token lacks ``scope``, which a new one may carry."""
    return OCIError(
        Code.DENIED_INSUFFICIENT_SCOPE,
        message,
        detail,
        headers={"WWW-Authenticate": _challenge(request, scope, "insufficient_scope")},
    )


@dataclass(frozen=True)
class _TokenRequest:
    """What a token request asks for, and with which credentials."""

    scopes: list[str]
    name: str = ""
    secret: str = ""
    """A password grant's user name and secret (POST); empty for GET."""
    header: str | None = None
    """The ``Authorization`` header of a GET."""


async def _token_request(request: web.Request, ours: str) -> _TokenRequest:
    """A POST is an OAuth2 password grant, a GET docker's token request; either must name
    this service (or none)."""
    if request.method == "POST":
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        if grant_type != "password":
            raise OCIError(Code.UNSUPPORTED, f"grant_type {grant_type[:30]!r} is not supported")
        requested_service = str(form.get("service", ours))
        scopes = [s for value in form.getall("scope", []) for s in str(value).split(" ") if s]
        asked = _TokenRequest(scopes, str(form.get("username", "")), str(form.get("password", "")))
    else:
        requested_service = request.query.get("service", ours)
        scopes = [s for value in request.query.getall("scope", []) for s in value.split(" ") if s]
        asked = _TokenRequest(scopes, header=request.headers.get("Authorization"))
    if requested_service != ours:
        raise OCIError(Code.DENIED, f"unknown service {requested_service[:60]!r}")
    return asked


async def token_endpoint(request: web.Request) -> web.StreamResponse:
    """``GET /auth/token`` (docker token auth) and ``POST /auth/token`` (OAuth2 password
    grant, as newer clients send). Grants the part of the requested scopes the caller may
    have; an anonymous request gets an anonymous token."""
    service = request.app[AUTH]
    record = info(request)
    record.action = "auth.token"
    address = request.remote or "unknown"
    asked = await _token_request(request, service.settings.service)
    try:
        if asked.name:
            who = await service.login(asked.name, asked.secret, address)
        else:
            who = await service.from_header(asked.header, address)
    except AuthError as exc:
        refuse_login(record, exc)
        raise OCIError(
            Code.UNAUTHORIZED,
            exc.reason,
            None,
            headers={"WWW-Authenticate": f'Basic realm="{service.settings.service}"'},
        ) from exc
    if who.token is not None:  # a bearer token cannot be exchanged for another
        raise OCIError(Code.UNAUTHORIZED, "log in with a user name and secret")
    record.identity = who.name
    grants = service.grants_for(who, asked.scopes[:20])
    identity = who.identity
    await service.fresh_keys()
    token, ttl = service.issuer.issue(
        who.name,
        identity.id if identity else None,
        identity.token_version if identity else 0,
        grants,
    )
    record.reason = "granted " + "; ".join(
        f"{g.type}:{g.name}:{','.join(g.actions) or '-'}" for g in grants
    )
    return web.json_response(
        {
            "token": token,
            "access_token": token,
            "expires_in": ttl,
            "issued_at": datetime.now(UTC).isoformat(),
        },
        headers={"Cache-Control": "no-store"},
    )


def may(request: web.Request, repository: str, action: str) -> bool:
    """Whether the request's caller may do ``action`` on another repository (the source of
    a mount). Without authentication configured, everything is allowed."""
    if AUTH not in request.app:
        return True
    return action in request.app[AUTH].allowed(caller(request), repository)


def pullable_by_caller(request: web.Request, repository: str) -> bool:
    """For listings: uses the caller's bindings (a token only covers its requested scopes)."""
    if AUTH not in request.app:
        return True
    return "pull" in request.app[AUTH].allowed_by_bindings(caller(request), repository)


def bypasses_quarantine(request: web.Request, repository: str) -> bool:
    """``quarantine-reader`` may pull what the gate would deny, for forensics (logged)."""
    if AUTH not in request.app:
        return False
    who = caller(request)
    return not who.anonymous and request.app[AUTH].has_role(who, "quarantine-reader", repository)
