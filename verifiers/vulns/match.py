"""OSV's affected-version semantics (https://ossf.github.io/osv-schema/#evaluation).

A version is affected when it is listed in ``versions`` or falls in a range. Within a range the
events are sorted by version and walked in order: ``introduced`` switches "affected" on,
``fixed`` and ``limit`` switch it off at their version, ``last_affected`` switches it off just
after its version. So exactly-at-fixed is not affected and exactly-at-last_affected is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from verifiers.vulns.osv import Advisory, Affected, Event, Range
from verifiers.vulns.versions import VersionError, order_for, parse

if TYPE_CHECKING:
    from univers import versions as uv

ZERO = "0"
"""OSV's ``introduced: "0"``: every version from the beginning."""


@dataclass(frozen=True)
class Match:
    """An advisory that covers one installed package version."""

    advisory: Advisory
    affected: Affected
    fixed: str
    """The first fixed version above the installed one, or "" when no fix is known."""


def is_affected(affected: Affected, version: str) -> bool:
    """Whether ``version`` of ``affected``'s package is covered by the advisory entry."""
    if version in affected.versions:
        return True
    return any(_in_range(affected.ecosystem, r, version) for r in affected.ranges)


def fixed_version(affected: Affected, version: str) -> str:
    """The lowest ``fixed`` event above ``version`` in a range that covers it ("" if none)."""
    for r in affected.ranges:
        order = order_for(affected.ecosystem, r.type)
        if order is None or not _in_range(affected.ecosystem, r, version):
            continue
        try:
            current = parse(order, version)
            fixes = [parse(order, e.version) for e in r.events if e.kind == "fixed"]
        except VersionError:
            continue
        above = sorted(f for f in fixes if f > current)
        if above:
            return str(above[0])
    return ""


def matches(advisories: Iterable[Advisory], ecosystem: str, name: str, version: str) -> list[Match]:
    """Every advisory entry for (ecosystem, name) that covers ``version``."""
    found = []
    for advisory in advisories:
        for entry in advisory.affected:
            if entry.ecosystem == ecosystem and entry.name == name and is_affected(entry, version):
                found.append(Match(advisory, entry, fixed_version(entry, version)))
    return found


def _in_range(ecosystem: str, rng: Range, version: str) -> bool:
    order = order_for(ecosystem, rng.type)
    if order is None:
        return False
    try:
        current = parse(order, version)
        starts = [e for e in rng.events if e.kind == "introduced" and e.version == ZERO]
        keyed = [(parse(order, e.version), e) for e in rng.events if e.version != ZERO]
    except VersionError:
        return False  # an unparsable event or installed version cannot be ordered: no match
    affected = bool(starts)  # introduced "0" opens the range below every version
    for key, event in sorted(keyed, key=_first):
        if event.kind == "introduced" and current >= key:
            affected = True
        elif _closes(event.kind, current, key):
            affected = False
    return affected


def _closes(kind: str, current: uv.Version, key: uv.Version) -> bool:
    """``fixed``/``limit`` close the range at their version, ``last_affected`` just after it."""
    if kind == "last_affected":
        return bool(current > key)
    return kind in ("fixed", "limit") and bool(current >= key)


def _first(item: tuple[uv.Version, Event]) -> Any:
    return item[0]  # univers versions are totally ordered within one class
