"""The policies in force: the settings file's, with the waivers admins made at run time.

One seam for every decision (a verification, the pull gate's blob check, a re-evaluation, the
policy dry-run): whoever asks "which policy applies to an image of this repository from this
origin" gets the settings file's policy (``config.policy.match_policy``; an image's origin is
``config.remotes.origin_of``, stored with its verdict) with the active stored waivers whose
scope matches the repository appended to its own. ``verifiers.policy`` then applies both kinds
alike.

A stored waiver joins the policy only for the repositories its scope matches, so the policy's
version (a hash of its content, recorded on every verdict) changes only there: re-evaluation
after a waiver is made, withdrawn or expires decides again exactly the verdicts in its scope.
A repository no stored waiver applies to gets the settings file's policy object itself, with
the version it always had.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import Policy, Waiver, match_policy
from config.remotes import LOCAL
from storage import waivers
from storage.waivers import StoredWaiver

log = logging.getLogger("gatekeeper.policy")

CACHE_LIMIT = 10_000
"""Repositories whose merged policy is remembered; past it the memo starts over."""


class PolicySource(Protocol):
    """Anything that answers which policy applies to an image of a repository and origin."""

    def match(self, repository: str, origin: str = LOCAL) -> Policy: ...


def as_waiver(stored: StoredWaiver) -> Waiver:
    """A stored waiver in the settings file's shape (validated again: text refused there is
    refused here too)."""
    return Waiver(
        finding=stored.finding,
        repositories=[stored.scope],
        reason=stored.reason,
        author=stored.author,
        expires=stored.expires_at,
    )


def merge(policy: Policy, extra: Sequence[Waiver]) -> Policy:
    """``policy`` with ``extra`` waivers after its own; itself when there are none. A deny-all
    policy stays as it is: it allows nothing for a waiver to lift."""
    if not extra or policy.deny_all:
        return policy
    return policy.model_copy(update={"waivers": [*policy.waivers, *extra]})


class PolicyBook:
    """The settings file's policies and a fixed set of stored waivers (a snapshot)."""

    def __init__(self, policies: Sequence[Policy], stored: Sequence[StoredWaiver] = ()) -> None:
        self.policies = list(policies)
        self.stored = tuple(stored)
        self._waivers: list[tuple[str, Waiver]] = []
        for item in self.stored:
            try:
                self._waivers.append((item.scope, as_waiver(item)))
            except ValidationError as exc:  # written around the API: skipped, never fatal
                log.error("stored waiver %s is ignored: %s", item.id, exc)
        self._memo: dict[tuple[str, str], Policy] = {}

    @property
    def key(self) -> tuple[Any, ...]:
        """What the snapshot's decisions depend on: two books with equal keys decide alike."""
        return tuple((w.id, w.finding, w.scope, w.expires_at) for w in self.stored)

    def match(self, repository: str, origin: str = LOCAL) -> Policy:
        found = self._memo.get((repository, origin))
        if found is None:
            extra = [w for scope, w in self._waivers if fnmatch.fnmatchcase(repository, scope)]
            found = merge(match_policy(self.policies, repository, origin), extra)
            if len(self._memo) >= CACHE_LIMIT:
                self._memo.clear()
            self._memo[(repository, origin)] = found
        return found


async def load_book(
    db: async_sessionmaker[Any], policies: Sequence[Policy], moment: datetime | None = None
) -> PolicyBook:
    """The policies with the waivers active at ``moment`` (now)."""
    async with db() as session:
        stored = await waivers.active(session, moment)
    return PolicyBook(policies, stored)
