"""When an admin's release ends: one rule for the admin API and the CLI.

A release is an exception to the policy, so it has a cap (:data:`MAX_RELEASE`) whatever form
its end is given in: seconds from now (``expires_in_seconds``, the CLI's ``--expires-in 2d``) or
a moment (``expires_at``, ``--expires-at``). A moment must carry its zone offset and is turned
into UTC here, so ``12:00-10:00`` means 22:00 UTC wherever it is later stored or compared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MAX_RELEASE = timedelta(days=366)
MAX_RELEASE_SECONDS = int(MAX_RELEASE.total_seconds())
_CAP = f"a release lasts at most {MAX_RELEASE.days} days (release again when it ends)"


class ReleaseTermError(ValueError):
    """The requested end of a release is not acceptable. ``field`` names the input at fault
    (the API's field; the CLI names its own option), the message says why."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field

    def describe(self) -> str:
        return f"{self.field} {self}" if self.field else str(self)


def release_end(
    now: datetime, *, seconds: float | None = None, at: datetime | None = None
) -> datetime | None:
    """The UTC moment a release given as ``seconds`` from ``now`` or as ``at`` ends; None for
    a release without an end (it lasts until re-quarantined or a rescan passes)."""
    if seconds is not None and at is not None:
        raise ReleaseTermError(None, "give expires_in_seconds or expires_at, not both")
    if seconds is not None:
        if not seconds > 0:
            raise ReleaseTermError("expires_in_seconds", "must be longer than zero")
        if not seconds <= MAX_RELEASE_SECONDS:
            raise ReleaseTermError("expires_in_seconds", f"is {seconds / 86400:.1f} days; {_CAP}")
        return now.astimezone(UTC) + timedelta(seconds=seconds)
    if at is None:
        return None
    if at.utcoffset() is None:
        raise ReleaseTermError(
            "expires_at", "needs a zone offset, for example 2030-01-31T12:00:00Z"
        )
    try:
        end = at.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:00-10:00 is in the year 10000 in UTC
        raise ReleaseTermError("expires_at", f"is out of range; {_CAP}") from exc
    if end <= now:
        raise ReleaseTermError("expires_at", f"is in the past ({end.isoformat()} in UTC)")
    if end - now > MAX_RELEASE:
        raise ReleaseTermError(
            "expires_at", f"is {(end - now).days} days from now ({end.isoformat()} in UTC); {_CAP}"
        )
    return end
