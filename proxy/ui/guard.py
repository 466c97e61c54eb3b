"""Who is at the console, and may they do this: the middleware every console page passes.

A page declares what it needs (``proxy.admin.access.Need``: read, or act, within the signed-in
person's repositories), or nothing (the sign-in form and the style sheet). For the rest, the
session cookie must name a live session (``storage.console_sessions``: idle and absolute
expiry) of a user who is still usable: disabled, expired, revoked or rotated credentials end
the session at the next request, as they end tokens. Rights come from the user's role bindings
through the admin API's model (``proxy.auth.rights``), so the console admits exactly whom the
admin API admits: ``admin`` acts, ``auditor`` and ``quarantine-reader`` look, anyone else is
refused with 403.

Every POST carries a CSRF token in its form: the session's own (``csrf``) once signed in, or
before that the secret of the sign-in cookie. A form without it, or with another, is refused
with 403 before its handler runs, so no handler can forget the check.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy.admin.access import NEED, RIGHTS, Need, admit
from proxy.admin.errors import AdminCode, AdminError
from proxy.auth.http import AUTH
from proxy.auth.rights import Rights
from proxy.auth.service import AuthError
from proxy.context import info
from proxy.errors import Handler
from proxy.state import services
from proxy.ui import sessions
from storage import console_sessions
from storage.console_sessions import ConsoleSession
from storage.timeutil import now as utcnow

log = logging.getLogger("gatekeeper.console")

SESSION: web.RequestKey[ConsoleSession] = web.RequestKey("console_session", ConsoleSession)
TOUCH_EVERY = timedelta(seconds=15)
"""A session's last use is written at most this often (the idle clock's resolution)."""
CSRF_FIELD = "csrf"


class SignInNeeded(Exception):
    """No live session: the browser is sent to the sign-in page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def build_guard(needs: Mapping[str, Need | None]) -> Middleware:
    """``needs`` maps each route name to what it needs, None for open pages."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        record = info(request)
        name = request.match_info.route.name or "ui.unknown"
        record.action = name
        need = needs.get(name, Need.READ)  # an unknown path is for signed-in readers only
        if need is None:
            if request.method == "POST":
                await _check_login_csrf(request)
            return await handler(request)
        try:
            who, found = await _signed_in(request)
        except SignInNeeded as exc:
            record.decision, record.reason = "deny", exc.reason
            return _to_sign_in(request)
        record.identity = who.principal
        admit(who, need, name)
        request[RIGHTS], request[NEED], request[SESSION] = who, need, found
        if request.method == "POST":
            form = await request.post()
            if not _same(str(form.get(CSRF_FIELD, "")), found.csrf):
                raise AdminError(AdminCode.FORBIDDEN, "the form's CSRF token is missing or wrong")
        await _touch(request, found)
        return await handler(request)

    return guard


async def _signed_in(request: web.Request) -> tuple[Rights, ConsoleSession]:
    auth = request.config_dict.get(AUTH)
    if auth is None:
        raise AdminError(
            AdminCode.ADMIN_API_DISABLED,
            "the console signs in the gatekeeper's users, and authentication is off "
            "(set [auth] enabled = true)",
        )
    secret = request.cookies.get(sessions.SESSION_COOKIE)
    if not secret:
        raise SignInNeeded("not signed in")
    svc = services(request)
    console = svc.settings.console
    async with svc.db() as session:
        found = await console_sessions.live(
            session,
            secret,
            moment=utcnow(),
            idle=sessions.idle(console),
            absolute=sessions.absolute(console),
        )
    if found is None:
        raise SignInNeeded("the console session expired or was ended")
    try:
        caller = await auth.from_session(found.identity_id, found.token_version)
    except AuthError as exc:
        async with svc.db() as session, session.begin():
            await console_sessions.end(session, found.key_hash)
        raise SignInNeeded(f"session ended: {exc.reason}") from exc
    return Rights.from_bindings(caller.name, caller.bindings), found


async def _touch(request: web.Request, found: ConsoleSession) -> None:
    moment = utcnow()
    if moment - found.last_seen < TOUCH_EVERY:
        return
    async with services(request).db() as session, session.begin():
        await console_sessions.touch(session, found.key_hash, moment)


async def _check_login_csrf(request: web.Request) -> None:
    form = await request.post()
    expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    if not expected or not _same(str(form.get(CSRF_FIELD, "")), expected):
        raise AdminError(
            AdminCode.FORBIDDEN,
            "the sign-in form's CSRF token is missing or wrong: load the sign-in page again",
        )


def _same(presented: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def _to_sign_in(request: web.Request) -> web.Response:
    """303 to the sign-in page, remembering where a GET was going."""
    target = "/ui/login"
    if request.method == "GET":
        target += "?next=" + quote(request.path_qs, safe="")
    response = web.Response(status=303, headers={"Location": target})
    if request.cookies.get(sessions.SESSION_COOKIE):
        sessions.clear_cookie(response, sessions.SESSION_COOKIE)
    return response
