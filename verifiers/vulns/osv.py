"""OSV records as frozen values, parsed once where they enter.

Only the fields matching needs are kept in typed form; the raw record travels alongside so
storage can keep it whole. The record's shape is checked against the part of the OSV schema we
read (``_schema``, pydantic) before anything touches it: a field of the wrong type
(``"aliases": 5``), a string longer than the advisory store's column or a value no database can
store (NaN, a lone surrogate) raises :class:`OsvError` naming the field, so an importer logs
and skips that one record instead of aborting a 4,000-record import on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import ValidationError

from oci import boundedjson
from verifiers.vulns import _schema
from verifiers.vulns.errors import VulnsError

RANGE_TYPES = ("ECOSYSTEM", "SEMVER")
"""Range types we evaluate; ``GIT`` ranges name commits, which an installed package lacks."""


class OsvError(VulnsError, ValueError):
    """A record that is not valid OSV (missing id, a field of the wrong type or size)."""


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
            record = _schema.Record.model_validate(data)
        except ValidationError as exc:
            raise OsvError(f"{_shown(data['id'])}: {_first_error(exc)}") from None
        summary = record.summary or (record.details or "").split("\n", 1)[0]
        return cls(
            id=record.id,
            modified=record.modified or "",
            summary=summary[:200],
            aliases=tuple(record.aliases or ()),
            affected=tuple(_affected(a) for a in record.affected or ()),
            raw=data,
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> Advisory:
        try:
            data = boundedjson.loads(body, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OsvError(f"not JSON: {exc}") from None
        advisory = cls.from_json(data)
        _storable(advisory, data)
        return advisory


def _affected(entry: _schema.Affected) -> Affected:
    return Affected(
        ecosystem=entry.package.ecosystem,
        name=entry.package.name,
        ranges=tuple(
            Range(
                type=r.type,
                events=tuple(Event(kind, v) for e in r.events or () for kind, v in e.items()),
            )
            for r in entry.ranges or ()
            if r.type in RANGE_TYPES
        ),
        versions=tuple(entry.versions or ()),
    )


def _no_constant(name: str) -> NoReturn:
    """``NaN`` and ``Infinity`` are not JSON; PostgreSQL's JSON type refuses them."""
    raise ValueError(f"{name} is not a JSON value")


def _storable(advisory: Advisory, data: dict[str, Any]) -> None:
    """Refuse here what would fail the import's whole transaction: a lone surrogate
    (``"\\ud800"``) parses but cannot be encoded to UTF-8, which both databases need, and
    PostgreSQL's text columns cannot hold NUL (the raw JSON column keeps it escaped)."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise OsvError(f"{_shown(advisory.id)}: a string holds a lone surrogate") from None
    fields = {
        "id": advisory.id,
        "modified": advisory.modified,
        "summary" if data.get("summary") else "details": advisory.summary,
    }
    for n, entry in enumerate(advisory.affected):
        fields[f"affected.{n}.package.ecosystem"] = entry.ecosystem
        fields[f"affected.{n}.package.name"] = entry.name
    for field, text in fields.items():
        if "\x00" in text:
            raise OsvError(f"{_shown(advisory.id)}: {field}: a NUL character cannot be stored")


def _first_error(exc: ValidationError) -> str:
    """The first problem, with where it is (``affected.3.package.name: ...``); a hostile
    record can have thousands, and the first one is enough to know why it was skipped."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _shown(text: str) -> str:
    """A record id as it may be printed: at most 128 characters, control and bidi
    characters escaped (ids come from the archive, and end up on an admin's terminal)."""
    return printable(text[:128])


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, bidi overrides) as ``\\uXXXX``."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
