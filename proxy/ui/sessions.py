"""The console's cookies: the session (a random secret whose hash keys a database row,
``storage.console_sessions``) and, before sign-in, the secret the sign-in form must echo.

Both are ``HttpOnly`` (no script reads them; the console has no script anyway), ``SameSite=
Strict`` (no other site's page sends them along) and ``Secure`` when the console is reached
over TLS, directly or through a proxy that says so, or when ``public_url`` is https.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from aiohttp import web

from config.settings import ConsoleSettings
from proxy.state import services

SESSION_COOKIE = "gatekeeper_console"
LOGIN_COOKIE = "gatekeeper_console_login"
PATH = "/ui"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def secure(request: web.Request) -> bool:
    public = services(request).settings.public_url
    return request.secure or (public is not None and public.scheme == "https")


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PATH)


def idle(settings: ConsoleSettings) -> timedelta:
    return timedelta(seconds=settings.idle_timeout_seconds)


def absolute(settings: ConsoleSettings) -> timedelta:
    return timedelta(seconds=settings.absolute_timeout_seconds)
