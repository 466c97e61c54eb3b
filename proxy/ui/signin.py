"""Sign-in and sign-out: the gatekeeper's users with their own passwords, through the same
``AuthService.login`` as ``docker login`` (argon2 hashes, the same throttling per address and
per identity). Robots are refused (their tokens are for automation, not for people), and so is
a user without an admin, auditor or quarantine-reader grant, before any session is made."""

from __future__ import annotations

from aiohttp import web

from proxy.admin.errors import AdminCode, AdminError
from proxy.auth.http import AUTH
from proxy.auth.rights import Rights
from proxy.auth.service import AuthError
from proxy.context import info
from proxy.state import services
from proxy.ui import sessions
from proxy.ui.guard import SESSION
from proxy.ui.render import page
from storage import console_sessions
from storage.timeutil import now as utcnow

MAX_NAME = 255
MAX_SECRET = 1024


def _next(request: web.Request, value: str | None) -> str:
    """Where to go after sign-in: a console path only (never another site)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


def _form(request: web.Request, message: str | None, status: int) -> web.Response:
    secret = request.cookies.get(sessions.LOGIN_COOKIE) or sessions.new_secret()
    target = _next(request, request.query.get("next"))
    response = page(
        request,
        "login.html",
        {"login_csrf": secret, "message": message, "next": target},
        status=status,
    )
    sessions.set_cookie(response, request, sessions.LOGIN_COOKIE, secret)
    return response


async def form(request: web.Request) -> web.StreamResponse:
    """GET /ui/login : the sign-in form, with a fresh CSRF secret in a cookie and the form."""
    return _form(request, None, 200)


async def sign_in(request: web.Request) -> web.StreamResponse:
    """POST /ui/login : check the password (throttled), the kind and the rights, then start a
    session and go where the person was going."""
    auth = request.config_dict.get(AUTH)
    if auth is None:
        raise AdminError(
            AdminCode.ADMIN_API_DISABLED,
            "the console signs in the gatekeeper's users, and authentication is off",
        )
    posted = await request.post()
    name = str(posted.get("username", ""))[:MAX_NAME]
    secret = str(posted.get("password", ""))[:MAX_SECRET]
    record = info(request)
    record.identity = name or "anonymous"
    if not name or not secret:
        return _form(request, "Enter your user name and password.", 400)
    try:
        caller = await auth.login(name, secret, request.remote or "unknown")
    except AuthError as exc:
        record.decision, record.reason = "deny", f"authentication failed: {exc.reason}"
        if exc.throttled:
            response = _form(request, "Too many failed sign-ins: try again later.", 429)
            response.headers["Retry-After"] = str(max(1, round(exc.throttled)))
            return response
        return _form(request, "The user name or password is not right.", 401)
    identity = caller.identity
    assert identity is not None
    if identity.kind != "user":
        raise AdminError(AdminCode.FORBIDDEN, f"{name} is a robot: the console is for people")
    rights = Rights.from_bindings(caller.name, caller.bindings)
    if rights.none:
        raise AdminError(
            AdminCode.FORBIDDEN,
            f"{name} holds no admin, auditor or quarantine-reader grant, so it may not use "
            "the console",
        )
    svc = services(request)
    console, moment, key = svc.settings.console, utcnow(), sessions.new_secret()
    async with svc.db() as session, session.begin():
        await console_sessions.sweep(
            session,
            moment=moment,
            idle=sessions.idle(console),
            absolute=sessions.absolute(console),
        )
        await console_sessions.create(
            session,
            key,
            identity_id=identity.id,
            token_version=identity.token_version,
            csrf=sessions.new_secret(),
            moment=moment,
        )
    record.decision, record.reason = "allow", "signed in to the console"
    response = web.Response(
        status=303, headers={"Location": _next(request, str(posted.get("next", "")))}
    )
    sessions.set_cookie(response, request, sessions.SESSION_COOKIE, key)
    sessions.clear_cookie(response, sessions.LOGIN_COOKIE)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """POST /ui/logout : end the session everywhere (the row goes) and forget the cookie."""
    found = request[SESSION]
    async with services(request).db() as session, session.begin():
        await console_sessions.end(session, found.key_hash)
    info(request).reason = "signed out of the console"
    response = web.Response(status=303, headers={"Location": "/ui/login"})
    sessions.clear_cookie(response, sessions.SESSION_COOKIE)
    return response
