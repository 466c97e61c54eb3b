"""The JSON bodies the admin API accepts, one validated model each.

Unknown fields are refused (a typo such as ``expires_in`` must not silently mean "forever"), and
free text is stripped so a reason of only spaces counts as missing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.policy import Policy

MAX_RELEASE_SECONDS = 366 * 24 * 3600


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    actor: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    """The person acting; recorded as ``admin-token:<actor>`` next to the token that proved it."""


class ReasonBody(_Body):
    """Re-quarantine: the reason is required and goes into the history and the access log."""

    reason: str = Field(min_length=1, max_length=2000)


class ReleaseBody(ReasonBody):
    """Release: a reason, and optionally when the release ends (relative or absolute)."""

    expires_in_seconds: float | None = Field(default=None, gt=0, le=MAX_RELEASE_SECONDS)
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_in_seconds is not None and self.expires_at is not None:
            raise ValueError("give expires_in_seconds or expires_at, not both")
        if self.expires_at is not None:
            if self.expires_at.tzinfo is None:
                raise ValueError("expires_at needs a zone offset, for example 2030-01-31T12:00:00Z")
            if self.expires_at <= datetime.now(UTC):
                raise ValueError("expires_at is in the past")
        return self

    def expiry(self, now: datetime) -> datetime | None:
        if self.expires_in_seconds is not None:
            return now + timedelta(seconds=self.expires_in_seconds)
        return self.expires_at


class RescanBody(_Body):
    """Rescan one image: the reason is optional (the actor is always recorded)."""

    reason: str | None = Field(default=None, min_length=1, max_length=2000)


class RescanAllBody(RescanBody):
    """Rescan every known image, or only those of one repository."""

    repository: str | None = Field(default=None, min_length=1, max_length=255)


class PolicyTestBody(BaseModel):
    """A dry-run: these policies instead of the configured ones (omitted: the configured ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policies: list[Policy] | None = None


class PolicyReevaluateBody(RescanAllBody):
    """Apply the configured policies now to every verdict (or one repository's) decided under
    another policy version; who asked and why go to the access log."""
