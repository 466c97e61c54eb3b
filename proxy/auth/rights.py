"""What an identity may do in the admin API, from its role bindings: one answer for every
admin endpoint (and for the console that will sit on the same API).

Three roles reach the admin API, each on a repository pattern:

- ``admin`` acts (release, re-quarantine, rescan, waive) and reads, on the repositories its
  pattern matches; an ``admin`` grant on ``*`` is the *global* admin, the only one who may
  do settings-wide things (policy re-evaluation and dry-runs, a rescan of everything);
- ``auditor`` and ``quarantine-reader`` read (images, findings, history, the access log,
  policies and waivers) on the repositories their pattern matches, and never act.

Rights are scopes of glob patterns, and the checks are deliberately conservative: a pattern an
admin asks for (a waiver's scope) must lie inside one of the admin's patterns in a way a
string comparison can prove (the same pattern, a literal name the pattern matches, or a
pattern below the literal prefix of a ``prefix*`` grant). An admin on ``team/*`` may waive in
``team/app`` or ``team/a*``, never in ``*`` or ``t*``, however the globs happen to overlap.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from storage.identities import Binding

WILDCARDS = frozenset("*?[")
READ_ROLES = ("admin", "auditor", "quarantine-reader")
"""Roles that may read the admin API (within their pattern)."""


def is_global(pattern: str) -> bool:
    """``*`` (or ``**``...): a pattern that matches every repository name."""
    return bool(pattern) and set(pattern) == {"*"}


def _literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard."""
    for index, char in enumerate(pattern):
        if char in WILDCARDS:
            return pattern[:index]
    return pattern


def within(inner: str, outer: str) -> bool:
    """True when every repository ``inner`` matches is provably matched by ``outer``.

    False means "not provable", which is how it must be read: the caller refuses."""
    if is_global(outer) or inner == outer:
        return True
    if not WILDCARDS & set(inner):
        return fnmatch.fnmatchcase(inner, outer)
    prefix = _literal_prefix(outer)
    if outer == prefix + "*" and prefix:
        # Every match of ``inner`` starts with its own literal prefix.
        return _literal_prefix(inner).startswith(prefix)
    return False


@dataclass(frozen=True)
class Scope:
    """The repositories some right covers, as the patterns of the grants that give it."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Scope:
        return cls(tuple(sorted(set(patterns))))

    @property
    def everything(self) -> bool:
        return any(is_global(p) for p in self.patterns)

    @property
    def empty(self) -> bool:
        return not self.patterns

    def covers(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, p) for p in self.patterns)

    def contains(self, pattern: str) -> bool:
        """Every repository ``pattern`` matches is covered (provably; see :func:`within`)."""
        return any(within(pattern, p) for p in self.patterns)

    def touches(self, pattern: str) -> bool:
        """``pattern`` and this scope share repositories as far as can be told without
        enumerating names: one lies inside the other. Used to show a reader the waivers that
        concern it (a waiver on ``*`` concerns a reader of ``team/*``)."""
        return any(within(pattern, p) or within(p, pattern) for p in self.patterns)

    def describe(self) -> str:
        if self.everything:
            return "every repository"
        return ", ".join(self.patterns) if self.patterns else "no repository"


@dataclass(frozen=True)
class Rights:
    """Who is calling the admin API and what they may read and administer."""

    principal: str
    administers: Scope
    reads: Scope
    """Always covers ``administers``: whoever may act on a repository may look at it."""

    @classmethod
    def unlimited(cls, principal: str) -> Rights:
        """The break-glass admin token: a global admin."""
        return cls(principal, Scope(("*",)), Scope(("*",)))

    @classmethod
    def from_bindings(cls, principal: str, bindings: Iterable[Binding]) -> Rights:
        admin, read = [], []
        for binding in bindings:
            if "admin" in binding.actions:
                admin.append(binding.pattern)
            if any(role in binding.actions for role in READ_ROLES):
                read.append(binding.pattern)
        return cls(principal, Scope.of(admin), Scope.of(read))

    @property
    def none(self) -> bool:
        return self.reads.empty

    @property
    def global_admin(self) -> bool:
        return self.administers.everything

    def describe(self) -> str:
        """One sentence naming what the identity may administer and read, for refusals."""
        if self.administers.empty:
            return f"{self.principal} administers nothing (it may read {self.reads.describe()})"
        said = f"{self.principal} may administer {self.administers.describe()}"
        extra = [p for p in self.reads.patterns if not self.administers.contains(p)]
        return said + (f" and read {', '.join(extra)}" if extra else "")
