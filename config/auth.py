"""Settings for client authentication and authorization."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

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
    """PEM EC P-256 private key for tokens. Unset: one is generated on first start and kept
    in the database, so every replica signs with the same key."""
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
