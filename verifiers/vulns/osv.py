"""OSV records as frozen values, parsed once where they enter.

Only the fields matching needs are kept in typed form; the raw record travels alongside so
storage can keep it whole. Bad records raise :class:`OsvError` so an importer can log and skip
them instead of aborting a 4,000-record import on one malformed file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifiers import boundedjson

RANGE_TYPES = ("ECOSYSTEM", "SEMVER")
"""Range types we evaluate; ``GIT`` ranges name commits, which an installed package lacks."""


class OsvError(ValueError):
    """A record that is not valid OSV (missing id, bad ``affected`` shape)."""


@dataclass(frozen=True)
class Event:
    """One range event: ``introduced``, ``fixed``, ``last_affected`` or ``limit``."""

    kind: str
    version: str


@dataclass(frozen=True)
class Range:
    type: str
    """``ECOSYSTEM`` (the ecosystem's own order) or ``SEMVER`` (SemVer 2.0 order)."""
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Affected:
    """One ``affected[]`` entry: a package and the versions of it the advisory covers."""

    ecosystem: str
    """As OSV spells it, with any release suffix (``PyPI``, ``Go``, ``Debian:12``)."""
    name: str
    ranges: tuple[Range, ...] = ()
    versions: tuple[str, ...] = ()
    """Explicitly enumerated affected versions (matched by equality)."""


@dataclass(frozen=True)
class Advisory:
    """One OSV record, reduced to what matching and findings need."""

    id: str
    modified: str
    """RFC 3339 timestamp; a newer one replaces a stored record on re-import."""
    summary: str
    aliases: tuple[str, ...]
    affected: tuple[Affected, ...]
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, data: Any) -> Advisory:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise OsvError("not an OSV record: no string 'id'")
        try:
            affected = tuple(_affected(a) for a in data.get("affected") or ())
        except (KeyError, TypeError, AttributeError) as exc:
            raise OsvError(f"{data['id']}: malformed 'affected': {exc}") from exc
        summary = data.get("summary") or (data.get("details") or "").split("\n", 1)[0]
        return cls(
            id=data["id"],
            modified=str(data.get("modified", "")),
            summary=summary[:200],
            aliases=tuple(data.get("aliases") or ()),
            affected=affected,
            raw=data,
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> Advisory:
        try:
            return cls.from_json(boundedjson.loads(body))
        except (ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, OsvError):
                raise
            raise OsvError(f"not JSON: {exc}") from exc


def _affected(entry: dict[str, Any]) -> Affected:
    package = entry["package"]
    ranges = tuple(
        Range(
            type=r["type"],
            events=tuple(Event(kind, str(v)) for e in r["events"] for kind, v in e.items()),
        )
        for r in entry.get("ranges") or ()
        if r.get("type") in RANGE_TYPES
    )
    return Affected(
        ecosystem=package["ecosystem"],
        name=package["name"],
        ranges=ranges,
        versions=tuple(str(v) for v in entry.get("versions") or ()),
    )
