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

VEX documents join the same way (``verifiers.vex.claims``): the settings file's (the matched
policy's ``vex.documents``), those an admin stored for a scope matching the repository, and the
signed referrers stored for it, each of those only while the matched policy still trusts the
key that signed it (a key removed from the policy takes its documents' waivers with it). Their
``not_affected`` and ``fixed`` statements become waivers limited to the images and packages
they name; one lapsed (``vex.expire_days``) is left out, so its lapse too is a policy change.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import Policy, Waiver, match_policy
from config.remotes import LOCAL
from storage import vex, waivers
from storage.timeutil import now as utcnow
from storage.vex import StoredVex
from storage.waivers import StoredWaiver
from verifiers.vex import claims
from verifiers.vex.model import Document, VexError, parse

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


@lru_cache(maxsize=1024)
def _parsed(text: str) -> Document:
    """A stored document parsed once (its text never changes; the policies load every few
    seconds)."""
    return parse(text)


@dataclass(frozen=True)
class _StoredSource:
    """A stored document, parsed, with where it applies."""

    stored: StoredVex
    source: claims.Source


def _sources(stored: Sequence[StoredVex]) -> list[_StoredSource]:
    found = []
    for item in stored:
        try:
            document = _parsed(item.document)
        except VexError as exc:  # written around the API: skipped, never fatal
            log.error("stored VEX document %s is ignored: %s", item.id, exc)
            continue
        label = f"VEX {item.id}" + (f" (referrer {item.referrer})" if item.referrer else "")
        found.append(_StoredSource(item, claims.Source(document, label, item.subject)))
    return found


class PolicyBook:
    """The settings file's policies, a fixed set of stored waivers and of stored VEX
    documents, at one moment (a snapshot)."""

    def __init__(
        self,
        policies: Sequence[Policy],
        stored: Sequence[StoredWaiver] = (),
        vex_documents: Sequence[StoredVex] = (),
        moment: datetime | None = None,
    ) -> None:
        self.policies = list(policies)
        self.stored = tuple(stored)
        self.moment = moment or utcnow()
        self._waivers: list[tuple[str, Waiver]] = []
        for item in self.stored:
            try:
                self._waivers.append((item.scope, as_waiver(item)))
            except ValidationError as exc:  # written around the API: skipped, never fatal
                log.error("stored waiver %s is ignored: %s", item.id, exc)
        self._vex = _sources(vex_documents)
        self._memo: dict[tuple[str, str], Policy] = {}

    @property
    def key(self) -> tuple[Any, ...]:
        """What the snapshot's decisions depend on: two books with equal keys decide alike."""
        return (
            tuple((w.id, w.finding, w.scope, w.expires_at) for w in self.stored),
            tuple(s.stored.id for s in self._vex),
            self._lapsed(),
        )

    def _lapsed(self) -> tuple[int, ...]:
        """How many VEX statements have lapsed, per expiry the policies set: a lapse changes
        what the book decides."""
        days = sorted({p.vex.expire_days for p in self.policies if p.vex and p.vex.expire_days})
        if not days:
            return ()
        documents = [s.source.document for s in self._vex]
        documents += [d for p in self.policies if p.vex for _, d in p.vex.parsed_documents]
        times = [d.time_of(st) for d in documents for st in d.statements]
        return tuple(sum(t + timedelta(days=n) <= self.moment for t in times) for n in days)

    def match(self, repository: str, origin: str = LOCAL) -> Policy:
        found = self._memo.get((repository, origin))
        if found is None:
            policy = match_policy(self.policies, repository, origin)
            extra = [w for scope, w in self._waivers if fnmatch.fnmatchcase(repository, scope)]
            extra += self._vex_waivers(policy, repository)
            found = merge(policy, extra)
            if len(self._memo) >= CACHE_LIMIT:
                self._memo.clear()
            self._memo[(repository, origin)] = found
        return found

    def _vex_waivers(self, policy: Policy, repository: str) -> list[Waiver]:
        """What the VEX documents in force in ``repository`` under ``policy`` waive."""
        trust = policy.vex
        trusted = trust.key_ids if trust else frozenset()
        sources = [
            claims.Source(document, f"VEX file {path}")
            for path, document in (trust.parsed_documents if trust else ())
        ]
        for item in self._vex:
            stored = item.stored
            if not fnmatch.fnmatchcase(repository, stored.scope):
                continue
            if stored.source == vex.REFERRER and (
                stored.scope != repository or stored.signer not in trusted
            ):
                continue  # a referrer speaks for its own repository, while its key is trusted
            sources.append(item.source)
        if not sources:
            return []
        days = trust.expire_days if trust else None
        expire_after = timedelta(days=days) if days else None
        return claims.waivers(sources, repository, expire_after=expire_after, now=self.moment)


async def load_book(
    db: async_sessionmaker[Any], policies: Sequence[Policy], moment: datetime | None = None
) -> PolicyBook:
    """The policies with the waivers active and the VEX documents in force at ``moment``
    (now)."""
    async with db() as session:
        stored = await waivers.active(session, moment)
        documents = await vex.active(session)
    return PolicyBook(policies, stored, documents, moment)
