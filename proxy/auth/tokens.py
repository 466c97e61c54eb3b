"""Registry bearer tokens: short-lived ES256 JWTs bound to our service and issuer.

The algorithm is fixed (``algorithms=["ES256"]``) so ``alg: none`` and HMAC-with-the-public-key
confusion are impossible; audience, issuer and expiry are required claims. Each token names the
identity and the ``token_version`` it was issued at, which is checked on every request, so
revoking, rotating or disabling an identity invalidates its tokens at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


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


def generate_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class TokenIssuer:
    """Signs and verifies tokens with one EC P-256 key."""

    def __init__(self, private_pem: str, *, service: str, issuer: str, ttl: int) -> None:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the token signing key must be an EC P-256 private key")
        self._private = key
        self._public = key.public_key()
        self.service = service
        self.issuer = issuer
        self.ttl = ttl

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
        return jwt.encode(claims, self._private, algorithm="ES256"), self.ttl

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._public,
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
