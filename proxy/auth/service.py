"""Who is calling, and what may they do: the one place that answers both.

Authentication accepts a bearer token issued by our token endpoint, or Basic credentials (a
user's password or a robot's token) for simple clients. Authorization unions the caller's role
bindings (from settings and the database, for the identity and its groups) on repository globs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.auth import AuthSettings
from config.text import first_refused
from proxy.auth.keystore import KeySource, key_source
from proxy.auth.passwords import VerifiedSecrets, dummy_hash, verify_secret
from proxy.auth.ratelimit import LoginThrottle
from proxy.auth.tokens import Grant, TokenClaims, TokenError, TokenIssuer
from storage import identities
from storage.identities import Binding, Identity

log = logging.getLogger("gatekeeper.auth")

REPOSITORY_ACTIONS = ("pull", "push", "delete")


class AuthError(Exception):
    """Authentication failed; ``reason`` is for the access log, never the credential."""

    def __init__(self, reason: str, *, throttled: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.throttled = throttled


@dataclass(frozen=True)
class Caller:
    """An authenticated (or anonymous) caller for the rest of the request."""

    name: str
    identity: Identity | None
    token: TokenClaims | None = None
    bindings: tuple[Binding, ...] = field(default_factory=tuple)

    @property
    def anonymous(self) -> bool:
        return self.identity is None


ANONYMOUS = Caller(name="anonymous", identity=None)


def _parse_basic(header: str) -> tuple[str, str] | None:
    try:
        raw = base64.b64decode(header.split(" ", 1)[1].strip(), validate=True).decode()
    except (IndexError, binascii.Error, UnicodeDecodeError):
        return None
    name, sep, secret = raw.partition(":")
    return (name, secret) if sep and name else None


class AuthService:
    def __init__(
        self, settings: AuthSettings, db: async_sessionmaker[Any], issuer: TokenIssuer
    ) -> None:
        self.settings = settings
        self.db = db
        self.issuer = issuer
        self.keys: KeySource | None = None
        self.throttle = LoginThrottle(settings, db)
        self.verified = VerifiedSecrets()

    @classmethod
    async def create(cls, settings: AuthSettings, db: async_sessionmaker[Any]) -> AuthService:
        """Load the signing keys (``proxy/auth/keystore.py``); a missing or unsafe key source
        stops the start with a ``ConfigError`` naming the setting."""
        keys = key_source(settings, db)
        issuer = TokenIssuer(
            await keys.load(),
            service=settings.service,
            issuer=settings.issuer,
            ttl=settings.token_ttl_seconds,
        )
        service = cls(settings, db, issuer)
        service.keys = keys
        return service

    async def fresh_keys(self, *, unknown_kid: bool = False) -> None:
        """Read the keys again when due (a rotation on another replica), or at once (rate
        limited) when a token names a key not known here."""
        if self.keys is None:
            return
        keyring = await self.keys.refresh(unknown_kid=unknown_kid)
        if keyring is not None:
            self.issuer.use(keyring)

    # -- authentication ---------------------------------------------------------------------

    async def login(self, name: str, secret: str, address: str) -> Caller:
        """Check a name and secret (user password or robot token), throttled."""
        if first_refused(name) is not None:
            # No identity's name holds one (``users create`` refuses them), and PostgreSQL
            # cannot even compare text with a NUL: refused here, before any query.
            raise AuthError("malformed credentials: the name holds a control character")
        wait = await self.throttle.refused_for(name, address)
        if wait > 0:
            raise AuthError("too many failed logins; try again later", throttled=wait)
        delay = await self.throttle.slowdown_for(name)
        if delay:
            await asyncio.sleep(delay)
        async with self.db() as session:
            identity = await identities.get_by_name(session, name)
        # Hashing runs in a thread: argon2 takes tens of milliseconds of CPU. A secret that
        # verified against this very hash a moment ago is not hashed again (VerifiedSecrets).
        stored = identity.secret_hash if identity else dummy_hash()
        ok = self.verified.known(stored, secret) or await asyncio.to_thread(
            verify_secret, stored, secret
        )
        if ok and identity is not None:
            self.verified.remember(stored, secret)
        if identity is None or not ok:
            await self.throttle.failed(name, address)
            raise AuthError("invalid credentials")
        if not identity.usable():
            await self.throttle.failed(name, address)
            raise AuthError("identity disabled or expired")
        await self.throttle.succeeded(name, address)
        return await self._caller(identity)

    async def from_header(self, header: str | None, address: str) -> Caller:
        """The caller behind an ``Authorization`` header (None: anonymous)."""
        if not header:
            return ANONYMOUS
        scheme = header.split(" ", 1)[0].lower()
        if scheme == "basic":
            parsed = _parse_basic(header)
            if parsed is None:
                raise AuthError("malformed basic credentials")
            return await self.login(parsed[0], parsed[1], address)
        if scheme == "bearer":
            return await self.from_token(header.split(" ", 1)[1].strip() if " " in header else "")
        raise AuthError(f"unsupported authorization scheme {scheme[:20]!r}")

    async def from_token(self, token: str) -> Caller:
        if not self.issuer.knows(token):
            await self.fresh_keys(unknown_kid=True)
        try:
            claims = self.issuer.verify(token)
        except TokenError as exc:
            raise AuthError(str(exc)) from exc
        if claims.identity_id is None:
            return Caller(name="anonymous", identity=None, token=claims)
        async with self.db() as session:
            identity = await identities.get_by_id(session, claims.identity_id)
        if identity is None or not identity.usable():
            raise AuthError("identity revoked, disabled or expired")
        if identity.token_version != claims.version or identity.name != claims.subject:
            raise AuthError("token revoked (credentials were rotated or revoked)")
        caller = await self._caller(identity)
        return Caller(caller.name, identity, claims, caller.bindings)

    async def from_session(self, identity_id: int, token_version: int) -> Caller:
        """The caller behind a console session (``proxy.ui``): refused, like a token, once the
        identity is disabled, expired, revoked, or its credentials were rotated since."""
        async with self.db() as session:
            identity = await identities.get_by_id(session, identity_id)
        if identity is None or not identity.usable():
            raise AuthError("identity revoked, disabled or expired")
        if identity.token_version != token_version:
            raise AuthError("session ended: the identity's credentials were rotated")
        return await self._caller(identity)

    async def _caller(self, identity: Identity) -> Caller:
        subjects = [identity.subject, *(f"group:{g}" for g in identity.groups)]
        async with self.db() as session:
            stored = await identities.bindings_for(session, subjects)
        static = [
            Binding(subject, pattern, tuple(b.actions))
            for b in self.settings.bindings
            for subject in b.subjects
            if subject in subjects
            for pattern in b.repositories
        ]
        return Caller(identity.name, identity, None, (*static, *stored))

    # -- authorization ----------------------------------------------------------------------

    def allowed(self, caller: Caller, repository: str) -> set[str]:
        """Actions ``caller`` may perform on ``repository`` (for a token: what it grants)."""
        if caller.token is not None:
            return caller.token.actions_for(repository)
        return self.allowed_by_bindings(caller, repository)

    def allowed_by_bindings(self, caller: Caller, repository: str) -> set[str]:
        actions: set[str] = set()
        if any(fnmatch.fnmatchcase(repository, p) for p in self.settings.anonymous_pull):
            actions.add("pull")
        for binding in caller.bindings:
            if fnmatch.fnmatchcase(repository, binding.pattern):
                actions.update(binding.actions)
        return actions

    def has_role(self, caller: Caller, role: str, repository: str = "*") -> bool:
        """Roles (``admin``, ``auditor``, ``quarantine-reader``) come from bindings, never from
        a token's grants: a token only carries repository actions."""
        return role in self.allowed_by_bindings(caller, repository)

    def grants_for(self, caller: Caller, scopes: list[str]) -> list[Grant]:
        """The part of the requested scopes this caller may have (docker token semantics:
        ask for more, get what you are allowed)."""
        grants: list[Grant] = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, wanted = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if kind == "repository":
                allowed = self.allowed_by_bindings(caller, name)
                given = [a for a in wanted if a in allowed and a in REPOSITORY_ACTIONS]
                if "*" in wanted:
                    given = [a for a in REPOSITORY_ACTIONS if a in allowed]
            elif kind == "registry" and name == "catalog":
                given = ["*"] if not caller.anonymous else []
            else:
                given = []
            grants.append(Grant(kind, name, tuple(given)))
        return grants
