"""Settings for client authentication and authorization."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

Action = Literal["pull", "push", "delete", "admin", "auditor", "quarantine-reader"]
"""Repository actions, and the roles ``admin`` (acts in the admin API on the repositories its
pattern matches; on ``*``, settings-wide too), ``auditor`` (reads the admin API there, never
acts) and ``quarantine-reader`` (pulls quarantined images there for forensics, and reads the
admin API like an auditor). See ``proxy.auth.rights``."""


class StaticBinding(BaseModel):
    """A role binding kept in the settings file (reviewable, versioned) rather than the
    database: ``subjects`` (``user:alice``, ``robot:ci``, ``group:devs``) may do ``actions`` on
    repositories matching ``repositories``."""

    model_config = {"extra": "forbid", "frozen": True}

    subjects: list[str] = Field(min_length=1)
    repositories: list[str] = Field(min_length=1)
    actions: list[Action] = Field(min_length=1)

    @field_validator("subjects")
    @classmethod
    def _check_subjects(cls, value: list[str]) -> list[str]:
        for subject in value:
            kind, _, name = subject.partition(":")
            if kind not in ("user", "robot", "group") or not name:
                raise ValueError(f"subject {subject!r} must be user:NAME, robot:NAME or group:NAME")
        return value


class AuthSettings(BaseModel):
    """Client authentication. On by default: an unauthenticated client can do nothing except
    pull from repositories listed in ``anonymous_pull``."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    service: str = "registry-gatekeeper"
    """The ``service`` of the token challenge and the tokens' audience."""
    issuer: str = "registry-gatekeeper"
    token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    signing_key_file: Path | None = None
    """PEM EC P-256 private key tokens are signed with, for operators who keep it outside the
    database. It must be readable by the gatekeeper's user only (mode 0600 or stricter, owned by
    that user or root), which is checked at start-up; every replica mounts the same file. Unset:
    the key lives in the database, encrypted under the key-encryption key."""
    verification_key_files: list[Path] = Field(default_factory=list)
    """With ``signing_key_file``: PEM keys (public, or private) of earlier signing keys whose
    tokens are still accepted until they expire, the overlap of a rotation."""
    key_encryption_key: SecretStr | None = None
    """Base64 of 32 random bytes (``openssl rand -base64 32``) under which the token signing key
    is encrypted in the database (AES-256-GCM). The same on every replica; give it through the
    environment (``GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY``), never in the settings file."""
    key_encryption_key_file: Path | None = None
    """The key-encryption key read from a file instead (a container secret), mode 0600 or
    stricter."""
    anonymous_pull: list[str] = Field(default_factory=list)
    """Repository globs anyone may pull without logging in (off by default)."""
    bindings: list[StaticBinding] = Field(default_factory=list)
    failures_per_address: int = Field(default=10, ge=1)
    """Failed logins from one client address within ``failure_window_seconds`` before that
    address is refused (HTTP 429) with a doubling back-off."""
    failures_per_identity: int = Field(default=5, ge=1)
    """Failed logins for one identity from one address before that pair is refused."""
    identity_slowdown_after: int = Field(default=20, ge=1)
    """Failed logins for one identity from anywhere after which every attempt for it is
    delayed (a distributed guess slows down, the owner can still log in)."""
    failure_window_seconds: float = Field(default=300.0, gt=0)
    max_backoff_seconds: float = Field(default=300.0, gt=0)

    @field_validator("key_encryption_key")
    @classmethod
    def _check_kek(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key_encryption_key(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.key_encryption_key is not None and self.key_encryption_key_file is not None:
            raise ValueError("set key_encryption_key or key_encryption_key_file, not both")
        has_kek = self.key_encryption_key is not None or self.key_encryption_key_file is not None
        if self.signing_key_file is not None and has_kek:
            raise ValueError(
                "signing_key_file keeps the key in a file, a key-encryption key keeps it in the "
                "database: choose one"
            )
        if self.verification_key_files and self.signing_key_file is None:
            raise ValueError("verification_key_files goes with signing_key_file")
        return self


KEK_BYTES = 32


def parse_key_encryption_key(text: str) -> bytes:
    """The 32 bytes of a base64 key-encryption key (standard or URL-safe alphabet)."""
    cleaned = text.strip()
    try:
        raw = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64 (openssl rand -base64 32)") from exc
    if len(raw) != KEK_BYTES:
        raise ValueError(f"must be {KEK_BYTES} bytes once decoded, not {len(raw)}")
    return raw
