"""Authorization inside the admin API: each route declares what it needs (:class:`Need`, in
the route table), the middleware checks that the caller has that right somewhere, and the
handler checks the repository (or pattern) it is about to touch with :func:`require`.

A refusal is 403 with a message naming what the caller may administer and read, so a team
admin told "no" learns where they may act. The per-repository check runs before anything is
looked up: a refusal says nothing about whether the image exists.
"""

from __future__ import annotations

import enum

from aiohttp import web

from proxy.admin.errors import AdminCode, AdminError
from proxy.auth.rights import Rights, Scope


class Need(enum.Enum):
    """What a route needs of its caller."""

    READ = "read"
    """Read, within the caller's read scope (admin, auditor or quarantine-reader)."""
    ACT = "act"
    """Act, within the caller's admin scope."""
    SETTINGS = "settings"
    """A settings-wide action: the admin role on every repository (a grant on ``*``)."""


RIGHTS: web.RequestKey[Rights] = web.RequestKey("admin_rights", Rights)
NEED: web.RequestKey[Need] = web.RequestKey("admin_need", Need)


def rights(request: web.Request) -> Rights:
    return request[RIGHTS]


def _forbidden(message: str) -> AdminError:
    return AdminError(AdminCode.FORBIDDEN, message)


def admit(who: Rights, need: Need, action: str) -> None:
    """The route-level check: does ``who`` hold the right ``need`` anywhere at all?"""
    if who.none:
        raise _forbidden(
            f"{who.principal} holds no admin, auditor or quarantine-reader grant, so it may "
            "not use the admin API"
        )
    if need is Need.ACT and who.administers.empty:
        raise _forbidden(f"{action} needs the admin role; {who.describe()}")
    if need is Need.SETTINGS and not who.global_admin:
        raise _forbidden(
            f"{action} is settings-wide: it needs the admin role on every repository (a grant "
            f"on *); {who.describe()}"
        )


def scope_for(request: web.Request) -> Scope:
    """The scope the current route's need is checked against."""
    who = rights(request)
    return who.reads if request[NEED] is Need.READ else who.administers


def require(request: web.Request, repository: str) -> None:
    """Refuse (403) unless the caller may do this route's kind of thing on ``repository``."""
    if not scope_for(request).covers(repository):
        raise _outside(request, repository)


def require_pattern(request: web.Request, pattern: str) -> None:
    """Refuse (403) unless every repository ``pattern`` matches is within the caller's scope
    for this route (a waiver's scope, say)."""
    if not scope_for(request).contains(pattern):
        raise _outside(request, pattern)


def require_everything(request: web.Request, what: str) -> None:
    """Refuse (403) unless the caller's scope for this route is every repository."""
    if not scope_for(request).everything:
        raise _forbidden(f"{what} covers every repository; {rights(request).describe()}")


def _outside(request: web.Request, target: str) -> AdminError:
    verb = "read" if request[NEED] is Need.READ else "administer"
    return _forbidden(f"{target} is outside what you may {verb}: {rights(request).describe()}")
