"""The OSV advisory store: records, an index of affected packages, and import versions.

Rows only; whether an image is affected is decided by ``verifiers.vulns.match``. An import is
idempotent: a record already stored with the same or a newer ``modified`` is left alone, a newer
one replaces it. An import that adds or updates a record is a new advisory-data version, which
verdicts record; one that changes nothing leaves the version in force (so verdicts matched
against it, and the vulnerabilities verifier's version, stay as they are). Records
are written in batches as they arrive (bulk INSERTs, no ORM objects kept), so an import's
memory does not grow with the archive.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.keys import images_clause
from storage.models import AdvisoryDataVersion, AdvisoryPackage, AdvisoryRow, ImagePackage
from storage.timeutil import now
from verifiers.vulns.ecosystems import inventory_ecosystem, normalize
from verifiers.vulns.osv import Advisory
from verifiers.vulns.severity import score

CHUNK = 500
"""Names per ``IN (...)`` clause: well under every backend's bound-parameter limit."""


@dataclass(frozen=True)
class ImportResult:
    """What one import changed."""

    data_version: int
    added: int
    updated: int
    unchanged: int
    packages: frozenset[tuple[str, str]]
    """(OSV ecosystem, name) of every added or updated record: what re-evaluation looks up."""
    advisories: frozenset[str] = frozenset()
    """Ids of the added or updated records: findings of other advisories cannot have changed."""
    new_version: bool = True
    """False when the import added and updated nothing: it made no data version, and
    ``data_version`` is the one already in force (0 before any)."""


class DbAdvisoryStore:
    """Advisories in the gatekeeper's database (SQLite or PostgreSQL)."""

    def __init__(self, db: async_sessionmaker[Any]) -> None:
        self._db = db

    async def import_advisories(self, advisories: Iterable[Advisory], source: str) -> ImportResult:
        """Store ``advisories`` in one transaction, under a new data version if any is new."""

        async def batches() -> AsyncIterator[Sequence[Advisory]]:
            batch: list[Advisory] = []
            for advisory in advisories:
                batch.append(advisory)
                if len(batch) == CHUNK:
                    yield batch
                    batch = []
            yield batch

        return await self.import_batches(batches(), source)

    async def import_batches(
        self, batches: AsyncIterable[Sequence[Advisory]], source: str
    ) -> ImportResult:
        """Store records as they come, a batch at a time, in one transaction: an import is all
        or nothing, yet holds one batch in memory, not the archive (plus each record's id, so a
        record listed twice is counted once). The data version is made when the first record
        is written, so an import that changes nothing makes none."""
        async with self._db() as session, session.begin():
            tally = _Tally(source)
            async for batch in batches:
                for start in range(0, len(batch), CHUNK):
                    await _store(session, batch[start : start + CHUNK], tally)
            if tally.row is not None:
                tally.row.added, tally.row.updated = tally.count("added"), tally.count("updated")
            else:
                tally.current = await session.scalar(select(func.max(AdvisoryDataVersion.version)))
        return tally.result()

    async def settled(self, version: int) -> None:
        """Record that the re-evaluation owed after import ``version`` is done."""
        async with self._db() as session, session.begin():
            await session.execute(
                update(AdvisoryDataVersion)
                .where(AdvisoryDataVersion.version == version)
                .values(settled_at=now())
            )

    async def unsettled(self, imported_before: datetime) -> list[ImportResult]:
        """Imports whose re-evaluation is still owed, oldest first, rebuilt from the records
        that still carry their data version (a record changed again since is owed by the later
        import). ``imported_before`` leaves an import that is being re-evaluated right now to
        the process doing it."""
        async with self._db() as session:
            versions = (
                await session.scalars(
                    select(AdvisoryDataVersion.version)
                    .where(
                        AdvisoryDataVersion.settled_at.is_(None),
                        AdvisoryDataVersion.imported_at < imported_before,
                    )
                    .order_by(AdvisoryDataVersion.version)
                )
            ).all()
            results = []
            for version in versions:
                rows = await session.execute(
                    select(
                        AdvisoryPackage.advisory_id, AdvisoryPackage.ecosystem, AdvisoryPackage.name
                    )
                    .join(AdvisoryRow, AdvisoryRow.id == AdvisoryPackage.advisory_id)
                    .where(AdvisoryRow.data_version == version)
                )
                found = rows.all()
                results.append(
                    ImportResult(
                        version,
                        0,
                        0,
                        0,
                        frozenset((e, n) for _, e, n in found),
                        frozenset(i for i, _, _ in found),
                    )
                )
            return results

    async def for_package(self, ecosystem: str, name: str) -> list[Advisory]:
        """Every stored advisory with an ``affected`` entry for (ecosystem, name)."""
        # Each advisory once, chosen by id: PostgreSQL cannot DISTINCT over a JSON column.
        ids = select(AdvisoryPackage.advisory_id).where(
            AdvisoryPackage.ecosystem == ecosystem,
            AdvisoryPackage.name == normalize(ecosystem, name),
        )
        async with self._db() as session:
            rows = await session.scalars(select(AdvisoryRow.raw).where(AdvisoryRow.id.in_(ids)))
            return [Advisory.from_json(raw) for raw in rows]

    async def for_keys(
        self, keys: Iterable[tuple[str, str]], parsed: dict[str, Advisory] | None = None
    ) -> dict[tuple[str, str], list[Advisory]]:
        """:func:`advisories_for` in a session of its own."""
        async with self._db() as session:
            return await advisories_for(session, keys, parsed)

    async def data_version(self) -> int:
        """The newest import's version (0 before the first import)."""
        async with self._db() as session:
            return int(await session.scalar(select(func.max(AdvisoryDataVersion.version))) or 0)

    async def images_with(self, packages: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """(repository, digest) of every inventoried image holding one of ``packages``."""
        by_type: dict[str, set[str]] = {}
        for ecosystem, name in packages:
            kind = inventory_ecosystem(ecosystem)
            if kind is not None:
                by_type.setdefault(kind, set()).update(_spellings(ecosystem, name))
        images: set[tuple[str, str]] = set()
        async with self._db() as session:
            for kind, names in by_type.items():
                ordered = sorted(names)
                for start in range(0, len(ordered), CHUNK):
                    chunk = ordered[start : start + CHUNK]
                    rows = await session.execute(
                        select(ImagePackage.repository, ImagePackage.digest)
                        .where(ImagePackage.ecosystem == kind, _named(kind, chunk))
                        .distinct()
                    )
                    images.update((r, d) for r, d in rows.all())
        return images


async def advisories_for(
    session: AsyncSession,
    keys: Iterable[tuple[str, str]],
    parsed: dict[str, Advisory] | None = None,
) -> dict[tuple[str, str], list[Advisory]]:
    """The advisories of many (ecosystem, normalised name) keys in a few queries: what
    re-evaluation matches a batch of images against. ``parsed`` caches records by id across
    calls, so each is parsed once however many batches name it."""
    cache = parsed if parsed is not None else {}
    found: dict[tuple[str, str], list[Advisory]] = {}
    ordered = sorted(set(keys))
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        rows = await session.execute(
            select(AdvisoryPackage.ecosystem, AdvisoryPackage.name, AdvisoryPackage.advisory_id)
            .where(images_clause(AdvisoryPackage.ecosystem, AdvisoryPackage.name, chunk))
            .distinct()
        )
        wanted = rows.all()
        missing = sorted({i for _, _, i in wanted} - cache.keys())
        if missing:
            raws = await session.execute(
                select(AdvisoryRow.id, AdvisoryRow.raw).where(AdvisoryRow.id.in_(missing))
            )
            cache.update((i, Advisory.from_json(raw)) for i, raw in raws.all())
        for ecosystem, name, advisory_id in wanted:
            if advisory_id in cache:
                found.setdefault((ecosystem, name), []).append(cache[advisory_id])
    return found


def _named(kind: str, names: list[str]) -> Any:
    """OS packages are advised by source package; a binary without one is its own source."""
    if kind in ("deb", "apk"):
        return or_(
            ImagePackage.source_name.in_(names),
            (ImagePackage.source_name.is_(None)) & ImagePackage.name.in_(names),
        )
    if kind == "pypi":
        return func.lower(ImagePackage.name).in_(names)
    return ImagePackage.name.in_(names)


def _spellings(ecosystem: str, name: str) -> set[str]:
    """PyPI names as METADATA may spell them (lower-cased): ``a-b``, ``a_b``, ``a.b``."""
    if ecosystem != "PyPI":
        return {name}
    return {name, name.replace("-", "_"), name.replace("-", ".")}


def _keys(advisory: Advisory) -> set[tuple[str, str]]:
    return {(a.ecosystem, normalize(a.ecosystem, a.name)) for a in advisory.affected}


class _Tally:
    """What an import did to each record id (the id's first fate, upgraded when a later copy
    of it in the same import is newer), and the packages of every record written."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.row: AdvisoryDataVersion | None = None
        """The import's data version, made by :meth:`version` when a record is first written."""
        self.current: int | None = None
        """The version in force, when this import made none."""
        self.fates: dict[str, str] = {}
        """Record id -> ``added``, ``updated`` or ``unchanged``."""
        self.packages: set[tuple[str, str]] = set()

    async def version(self, session: AsyncSession) -> int:
        """This import's data version, made now if no record was written before."""
        if self.row is None:
            self.row = AdvisoryDataVersion(
                source=self.source, imported_at=now(), added=0, updated=0
            )
            session.add(self.row)
            await session.flush()
        return int(self.row.version)

    def note(self, advisory_id: str, *, written: bool, existed: bool) -> None:
        fate = self.fates.get(advisory_id)
        if not written:
            self.fates.setdefault(advisory_id, "unchanged")
        elif fate is None:
            self.fates[advisory_id] = "updated" if existed else "added"
        elif fate == "unchanged":
            self.fates[advisory_id] = "updated"

    def count(self, fate: str) -> int:
        return sum(1 for f in self.fates.values() if f == fate)

    def result(self) -> ImportResult:
        changed = frozenset(i for i, f in self.fates.items() if f != "unchanged")
        return ImportResult(
            int(self.row.version) if self.row is not None else int(self.current or 0),
            self.count("added"),
            self.count("updated"),
            self.count("unchanged"),
            frozenset(self.packages),
            changed,
            new_version=self.row is not None,
        )


async def _store(session: AsyncSession, batch: Sequence[Advisory], tally: _Tally) -> None:
    """Write the records of ``batch`` that are new or newer than the stored copy (which may
    have been written by an earlier batch of this import); at most ``CHUNK`` records."""
    latest = _latest(batch)
    stored = dict(
        (
            await session.execute(
                select(AdvisoryRow.id, AdvisoryRow.modified).where(
                    AdvisoryRow.id.in_([a.id for a in latest])
                )
            )
        ).all()
    )
    fresh = []
    for advisory in latest:
        previous = stored.get(advisory.id)
        written = previous is None or _newer(advisory.modified, previous)
        tally.note(advisory.id, written=written, existed=previous is not None)
        if written:
            fresh.append(advisory)
    replaced = [a.id for a in fresh if a.id in stored]
    if replaced:
        await session.execute(
            delete(AdvisoryPackage).where(AdvisoryPackage.advisory_id.in_(replaced))
        )
        await session.execute(delete(AdvisoryRow).where(AdvisoryRow.id.in_(replaced)))
    if not fresh:
        return
    version = await tally.version(session)
    await session.execute(insert(AdvisoryRow), [_row(a, version) for a in fresh])
    index: list[dict[str, str]] = []
    for advisory in fresh:
        keys = _keys(advisory)
        tally.packages |= keys
        index += ({"advisory_id": advisory.id, "ecosystem": e, "name": n} for e, n in keys)
    if index:  # the records first: the index rows reference them
        await session.execute(insert(AdvisoryPackage), index)


def _latest(advisories: Iterable[Advisory]) -> list[Advisory]:
    """One record per id (the newest), so a batch listing a record twice stores it once."""
    chosen: dict[str, Advisory] = {}
    for advisory in advisories:
        seen = chosen.get(advisory.id)
        if seen is None or _newer(advisory.modified, seen.modified):
            chosen[advisory.id] = advisory
    return list(chosen.values())


def _newer(candidate: str, stored: str) -> bool:
    try:
        return datetime.fromisoformat(candidate) > datetime.fromisoformat(stored)
    except (ValueError, TypeError):  # unparsable, or naive vs aware: compare as text
        return candidate > stored


def _row(advisory: Advisory, version: int) -> dict[str, Any]:
    scored = score(advisory.raw)
    return {
        "id": advisory.id,
        "modified": advisory.modified,
        "summary": advisory.summary,
        "severity": scored.severity.name,
        "score": scored.score,
        "raw": advisory.raw,
        "data_version": version,
    }
