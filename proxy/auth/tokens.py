"""Registry bearer tokens: short-lived ES256 JWTs bound to our service and issuer.

The algorithm is fixed (``algorithms=["ES256"]``) so ``alg: none`` and HMAC-with-the-public-key
confusion are impossible; audience, issuer and expiry are required claims. Each token names the
identity and the ``token_version`` it was issued at, which is checked on every request, so
revoking, rotating or disabling an identity invalidates its tokens at once. The header's ``kid``
names the signing key (``proxy/auth/keyring.py``): a token is verified with that key only, and
one naming no key the registry accepts is refused before any signature check.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from proxy.auth.keyring import Keyring


class TokenError(Exception):
    """A token is not acceptable; the message says why (never echoing the token)."""


@dataclass(frozen=True)
class Grant:
    """Access one token carries for one resource."""

    type: str
    name: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    identity_id: int | None
    version: int
    grants: tuple[Grant, ...]

    def actions_for(self, repository: str) -> set[str]:
        found: set[str] = set()
        for grant in self.grants:
            if grant.type == "repository" and grant.name == repository:
                found.update(grant.actions)
        return found


class TokenIssuer:
    """Signs tokens with the keyring's signing key (named in the ``kid`` header) and verifies
    them with the key their ``kid`` names, among every key the keyring still accepts."""

    def __init__(self, keys: Keyring, *, service: str, issuer: str, ttl: int) -> None:
        self.keys = keys
        self.service = service
        self.issuer = issuer
        self.ttl = ttl

    def use(self, keys: Keyring) -> None:
        """Sign and verify with ``keys`` from now on (a rotation was read)."""
        self.keys = keys

    def knows(self, token: str) -> bool:
        """Whether the key the token names is one this issuer accepts."""
        return _kid(token) in self.keys.verifying

    def issue(
        self, subject: str, identity_id: int | None, version: int, grants: list[Grant]
    ) -> tuple[str, int]:
        moment = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": moment,
            "nbf": moment - 5,
            "exp": moment + self.ttl,
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": g.type, "name": g.name, "actions": list(g.actions)} for g in grants
            ],
            "gk_id": identity_id,
            "gk_ver": version,
        }
        keys = self.keys
        token = jwt.encode(
            claims, keys.signing, algorithm="ES256", headers={"kid": keys.signing_kid}
        )
        return token, self.ttl

    def verify(self, token: str) -> TokenClaims:
        public = self.keys.verifying.get(_kid(token) or "")
        if public is None:
            raise TokenError("token signed by a key this registry does not accept")
        try:
            claims = jwt.decode(
                token,
                public,
                algorithms=["ES256"],
                audience=self.service,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "nbf", "sub", "aud", "iss"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("token is for another service") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token from another issuer") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token ({exc.__class__.__name__})") from exc
        try:
            grants = tuple(
                Grant(str(a["type"]), str(a["name"]), tuple(str(x) for x in a["actions"]))
                for a in claims.get("access", [])
            )
            identity_id = claims.get("gk_id")
            return TokenClaims(
                subject=str(claims["sub"]),
                identity_id=int(identity_id) if identity_id is not None else None,
                version=int(claims.get("gk_ver", 0)),
                grants=grants,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenError("token claims malformed") from exc


def _kid(token: str) -> str | None:
    """The ``kid`` of a token's header (unverified: it only picks the key to verify with)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) else None
