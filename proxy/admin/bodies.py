"""The JSON bodies the admin API accepts, one validated model each.

Unknown fields are refused (a typo such as ``expires_in`` must not silently mean "forever"), and
free text is stripped so a reason of only spaces counts as missing. Reasons and actors refuse
control and bidirectional characters: they end up in tables an admin reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.policy import Policy
from config.text import PlainText
from proxy.admin.releases import MAX_RELEASE_SECONDS, ReleaseTermError, release_end


class _Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, use_attribute_docstrings=True
    )

    actor: PlainText | None = Field(default=None, min_length=1, max_length=100)
    """The person acting; recorded as ``admin-token:<actor>`` next to the token that proved it.
    Like every reason, free of control and bidirectional characters (``config/text.py``)."""


class ReasonBody(_Body):
    """Re-quarantine: the reason is required and goes into the history and the access log."""

    reason: PlainText = Field(min_length=1, max_length=2000)
    """Why; kept in the history and the access log. No control or bidirectional characters."""


class ReleaseBody(ReasonBody):
    """Release: a reason, and optionally when the release ends (relative or absolute), both
    held to the same cap (``proxy.admin.releases``)."""

    expires_in_seconds: float | None = Field(default=None, gt=0, le=MAX_RELEASE_SECONDS)
    """When it ends, from now; at most one of this and ``expires_at``, neither: no end."""
    expires_at: datetime | None = None
    """When it ends: in the future, with a zone offset (converted to UTC), within the same
    cap as ``expires_in_seconds``."""

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        try:
            release_end(datetime.now(UTC), seconds=self.expires_in_seconds, at=self.expires_at)
        except ReleaseTermError as exc:
            raise ValueError(exc.describe()) from exc
        return self

    def expiry(self, now: datetime) -> datetime | None:
        """The end in UTC; the validator has already held it to the cap."""
        if self.expires_in_seconds is not None:
            return now.astimezone(UTC) + timedelta(seconds=self.expires_in_seconds)
        return self.expires_at.astimezone(UTC) if self.expires_at is not None else None


class RescanBody(_Body):
    """Rescan one image: the reason is optional (the actor is always recorded)."""

    reason: PlainText | None = Field(default=None, min_length=1, max_length=2000)
    """Why, for the access log. No control or bidirectional characters."""


class RescanAllBody(RescanBody):
    """Rescan every known image, or only those of one repository."""

    repository: str | None = Field(default=None, min_length=1, max_length=255)
    """Only this repository's images (or verdicts); omitted: every one."""


class PolicyTestBody(BaseModel):
    """A dry-run: these policies instead of the configured ones (omitted: the configured ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    policies: list[Policy] | None = None
    """Omitted: the configured policies."""


class PolicyReevaluateBody(RescanAllBody):
    """Apply the configured policies now to every verdict (or one repository's) decided under
    another policy version; who asked and why go to the access log."""


class WaiverBody(ReleaseBody):
    """A waiver: ``finding`` (a rule id, or ``verifier:rule``) stops blocking in the
    repositories ``scope`` matches, for ``reason``, until an optional end held to the release
    cap. The author is whoever makes the request; the scope must lie within what they
    administer."""

    finding: PlainText = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    """A rule id (``CVE-2024-1``) or ``verifier:rule`` (``config-sanity:config.no-user``)."""
    scope: PlainText = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    """Repository glob it applies in (``team/*``, ``team/app``); must lie within what the
    caller administers (else 403)."""


class PrefetchBody(_Body):
    """Fetch images through the registry and verify them before anyone pulls them."""

    images: list[str] = Field(min_length=1, max_length=100)
    """``REPOSITORY:TAG`` or ``REPOSITORY@sha256:...`` (``library/alpine:3.20``)."""
    again: bool = False
    """Verify again an image that already has a verdict (default: leave it as it is)."""
    reason: PlainText | None = Field(default=None, min_length=1, max_length=2000)


class VexBody(ReasonBody):
    """An OpenVEX document to accept in the repositories ``scope`` matches (within what the
    caller administers); ``reason`` is why (the access log keeps it)."""

    document: dict[str, Any]
    """An OpenVEX document (v0.2.0 or v0.0.x), validated whole (``verifiers.vex.model``)."""
    scope: PlainText = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    """Repository glob it applies in; must lie within what the caller administers."""
