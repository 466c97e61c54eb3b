"""Stored package inventories (``verifiers.scan.sink.InventorySink``) and reading them back for
SBOM export and for re-evaluation after an advisory import. Rows only: what is vulnerable is
decided elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.keys import images_clause
from storage.models import AdvisoryPackage, ImageInventoryRow, ImagePackage
from storage.prepared import table
from storage.timeutil import now
from verifiers.scan.model import ImageInventory, OsRelease, Package


class DbInventoryStore:
    """One image's inventory replaces the previous one in a single transaction."""

    def __init__(self, db: async_sessionmaker[Any]) -> None:
        self._db = db

    async def store(self, repository: str, digest: str, inventory: ImageInventory) -> None:
        os_release = inventory.os_release
        async with self._db() as session, session.begin():
            image = ImagePackage.repository == repository, ImagePackage.digest == digest
            await session.execute(delete(ImagePackage).where(*image))
            await session.merge(
                ImageInventoryRow(
                    repository=repository,
                    digest=digest,
                    os_id=os_release.id if os_release else None,
                    os_version_id=os_release.version_id if os_release else None,
                    os_codename=os_release.version_codename if os_release else None,
                    os_pretty_name=os_release.pretty_name if os_release else None,
                    package_count=len(inventory.packages),
                    scanned_at=now(),
                )
            )
            session.add_all(_row(repository, digest, p) for p in inventory.packages)

    async def store_many(self, images: Sequence[tuple[str, str, ImageInventory]]) -> None:
        """Several new inventories in one transaction, rows inserted in bulk (seeding a
        benchmark, an import): for images that have none yet, so nothing is replaced."""
        moment = now()
        async with self._db() as session, session.begin():
            heads = [
                {
                    "repository": repository,
                    "digest": digest,
                    "os_id": inv.os_release.id if inv.os_release else None,
                    "os_version_id": inv.os_release.version_id if inv.os_release else None,
                    "os_codename": inv.os_release.version_codename if inv.os_release else None,
                    "os_pretty_name": inv.os_release.pretty_name if inv.os_release else None,
                    "package_count": len(inv.packages),
                    "scanned_at": moment,
                }
                for repository, digest, inv in images
            ]
            await session.execute(insert(table(ImageInventoryRow)), heads)
            rows = [
                _columns(repository, digest, p)
                for repository, digest, inv in images
                for p in inv.packages
            ]
            if rows:
                await session.execute(insert(table(ImagePackage)), rows)

    async def load(self, repository: str, digest: str) -> ImageInventory | None:
        """The stored inventory, or None if the image was never inventoried."""
        async with self._db() as session:
            head = await session.get(ImageInventoryRow, (repository, digest))
            if head is None:
                return None
            rows = await session.scalars(
                select(ImagePackage)
                .where(ImagePackage.repository == repository, ImagePackage.digest == digest)
                .order_by(ImagePackage.ecosystem, ImagePackage.name, ImagePackage.version)
            )
            packages = tuple(_package(row) for row in rows)
        return ImageInventory(os_release=_os_release(head), packages=packages)


@dataclass(frozen=True)
class MatchableInventory:
    """What re-evaluation needs of one stored inventory: the distribution, and only the
    packages some stored advisory names (the rest cannot match, so they are not read)."""

    os_release: OsRelease | None
    packages: tuple[Package, ...]


async def matchable(
    session: AsyncSession,
    keys: Sequence[tuple[str, str]],
    interned: dict[tuple[Any, ...], Any] | None = None,
) -> dict[tuple[str, str], MatchableInventory]:
    """The inventories of ``keys`` (images never inventoried are absent), each with the
    packages whose name or source name an advisory lists, in two queries. The name test is
    loose on purpose (also PyPI's separator-insensitive spelling); exact matching is
    ``verifiers.vulns``'s job afterwards. ``interned`` (kept by the caller across batches) makes
    identical rows of different images one ``Package``: images share most of their packages,
    and what is computed per package is then computed once."""
    if not keys:
        return {}
    known = {} if interned is None else interned
    head = table(ImageInventoryRow).c
    heads = await session.execute(
        select(
            head.repository,
            head.digest,
            head.os_id,
            head.os_version_id,
            head.os_codename,
            head.os_pretty_name,
        ).where(images_clause(head.repository, head.digest, keys))
    )
    found: dict[tuple[str, str], tuple[OsRelease | None, list[Package]]] = {}
    for repository, digest, *os_fields in heads.all():
        os_key = ("os-release", *os_fields)
        if os_key not in known:
            known[os_key] = _release(*os_fields)
        found[(repository, digest)] = (known[os_key], [])
    if not found:
        return {}
    named = select(AdvisoryPackage.name)
    pep503 = func.replace(func.replace(func.lower(ImagePackage.name), "_", "-"), ".", "-")
    columns = table(ImagePackage).c
    rows = await session.execute(
        select(*(columns[name] for name in _PACKAGE_COLUMNS)).where(
            images_clause(ImagePackage.repository, ImagePackage.digest, found),
            or_(
                ImagePackage.name.in_(named),
                ImagePackage.source_name.in_(named),
                and_(ImagePackage.ecosystem == "pypi", pep503.in_(named)),
            ),
        )
    )
    # Plain rows, not ORM objects: a batch of images reads tens of thousands of them.
    for repository, digest, *fields in rows.all():
        values = tuple(fields)
        package = known.get(values)
        if package is None:
            package = known[values] = _from_columns(*values)
        found[(repository, digest)][1].append(package)
    return {key: MatchableInventory(os, tuple(packages)) for key, (os, packages) in found.items()}


_PACKAGE_COLUMNS = (
    "repository",
    "digest",
    "ecosystem",
    "name",
    "version",
    "path",
    "layer",
    "source_name",
    "source_version",
    "arch",
    "purl",
)


def _from_columns(
    ecosystem: str,
    name: str,
    version: str,
    path: str,
    layer: str,
    source_name: str | None,
    source_version: str | None,
    arch: str | None,
    purl: str,
) -> Package:
    return Package(
        ecosystem,
        name,
        version,
        path,
        layer,
        source_name or "",
        source_version or "",
        arch or "",
        purl,
    )


def _os_release(head: ImageInventoryRow) -> OsRelease | None:
    return _release(head.os_id, head.os_version_id, head.os_codename, head.os_pretty_name)


def _release(
    os_id: str | None, version_id: str | None, codename: str | None, pretty_name: str | None
) -> OsRelease | None:
    if not os_id:
        return None
    return OsRelease(os_id, version_id or "", codename or "", pretty_name or "")


def _row(repository: str, digest: str, package: Package) -> ImagePackage:
    return ImagePackage(**_columns(repository, digest, package))


def _columns(repository: str, digest: str, package: Package) -> dict[str, Any]:
    return {
        "repository": repository,
        "digest": digest,
        "ecosystem": package.ecosystem,
        "name": package.name,
        "version": package.version,
        "purl": package.purl,
        "layer": package.layer,
        "path": package.path,
        "source_name": package.source_name or None,
        "source_version": package.source_version or None,
        "arch": package.arch or None,
    }


def _package(row: ImagePackage) -> Package:
    return Package(
        ecosystem=row.ecosystem,
        name=row.name,
        version=row.version,
        path=row.path,
        layer=row.layer,
        source_name=row.source_name or "",
        source_version=row.source_version or "",
        arch=row.arch or "",
        purl=row.purl,
    )
