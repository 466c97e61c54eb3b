"""Settings of the cluster-wide scheduler: periodic full re-verification (``[rescan]``) and the
scheduled advisory mirror sync (``[advisories]``).

Durations are written as people write them (``"24h"``, ``"90s"``, ``"1h30m"``, the grammar of
``config/durations.py``) or as seconds; ``"off"`` (or ``0``) switches a periodic task off,
which the scheduler then says in its log.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, BeforeValidator, Field, field_validator

from config.durations import EXAMPLES, DurationError, parse_duration

OFF = ("off", "never", "disabled", "")


def seconds(value: Any) -> Any:
    """``"1h30m"`` -> 5400.0; numbers pass through; ``"off"`` -> 0. Anything else is left for
    pydantic to reject with the field's name."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in OFF:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except DurationError:
        raise ValueError(
            f"not a duration: {value!r} (use e.g. {EXAMPLES}, a number of seconds, or off)"
        ) from None


Duration = Annotated[float, BeforeValidator(seconds)]
"""Seconds, written as a number or as ``"24h"``-style text."""


class RescanSettings(BaseModel):
    """Periodic full re-verification of every stored image.

    On by default (daily): a signature that was valid at push time can be revoked or expire,
    and only re-verifying notices. The cost is bounded: a run is spread over ``spread``, at
    most ``max_per_tick`` images are queued per tick, and nothing is queued while the job
    queue already holds ``max_queued_jobs`` verifications.
    """

    model_config = {"extra": "forbid"}

    interval: Duration = Field(default=86400.0, ge=0)
    """Time between the starts of two scheduled runs; ``"off"`` disables scheduled runs
    (``gatekeeper rescan`` still works). The first run comes one interval after the first
    start of any replica."""
    spread: Duration = Field(default=3600.0, ge=0)
    """A scheduled run queues its images evenly over this window instead of all at once."""
    tick: Duration = Field(default=5.0, gt=0, le=300)
    """How often the scheduler wakes up (lock attempt, next batch, due mirror syncs)."""
    max_per_tick: int = Field(default=100, ge=1, le=100_000)
    """Images queued in one tick at most (also bounds catching up after downtime)."""
    max_queued_jobs: int = Field(default=500, ge=1)
    """Back-pressure: no batch is queued while this many jobs wait in the queue."""
    lease_seconds: float = Field(default=60.0, ge=5, le=3600)
    """SQLite only: how long the scheduler lease of a vanished process blocks another one."""


class AdvisoriesSettings(BaseModel):
    """Scheduled download of OSV archives from a mirror (``all.zip`` or per-ecosystem zips),
    and the caps on reading any OSV source (mirror or ``gatekeeper advisories import``)."""

    model_config = {"extra": "forbid", "hide_input_in_errors": True}

    mirror_url: AnyHttpUrl | None = None
    """One archive URL, e.g. ``https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip``.
    Logged without query or credentials, since mirrors often carry a token there."""
    mirror_urls: list[AnyHttpUrl] = Field(default_factory=list)
    """Several archives (one per ecosystem, as OSV publishes them); combined with
    ``mirror_url``."""
    sync_interval: Duration = Field(default=3600.0, ge=0)
    """Time between two conditional checks of each URL; ``"off"`` disables scheduled sync
    (``gatekeeper advisories sync`` still works)."""
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Connect timeout and longest silence while downloading."""
    max_download_bytes: int = Field(default=4 * 1024**3, ge=1024)
    """A download larger than this is abandoned as a failed sync (old data stays)."""
    download_deadline: Duration = Field(default=1800.0, gt=0)
    """The longest one download may take in all, however steadily its bytes arrive (a mirror
    dripping a byte a second never trips ``timeout_seconds``); past it the sync of that URL
    fails and is tried again at the next due time."""
    max_record_bytes: int = Field(default=4 * 1024**2, ge=1024, le=1024**3)
    """One OSV record (a JSON file or zip member), uncompressed: a larger one is skipped with
    a message and the rest are imported. Parsing a record takes up to ~25 times its size in
    memory, so this bounds the importer's memory; the largest real records are a few hundred
    KB. Applies to ``gatekeeper advisories import`` too."""
    max_uncompressed_bytes: int = Field(default=16 * 1024**3, ge=1024)
    """Every record of one archive (or directory) together, uncompressed: past it the import
    or sync fails as a whole and the data already imported stays. Applies to ``gatekeeper
    advisories import`` too."""

    @field_validator("mirror_urls")
    @classmethod
    def _unique(cls, value: list[AnyHttpUrl]) -> list[AnyHttpUrl]:
        urls = [str(u) for u in value]
        if len(set(urls)) != len(urls):
            raise ValueError("each mirror URL may appear only once")
        return value

    @property
    def urls(self) -> list[str]:
        """Every configured archive URL, each once, in the order written."""
        found = ([str(self.mirror_url)] if self.mirror_url else []) + [
            str(u) for u in self.mirror_urls
        ]
        return list(dict.fromkeys(found))
