"""Stored package inventories (``verifiers.scan.sink.InventorySink``) and reading them back for
SBOM export. Rows only: what is vulnerable is decided elsewhere."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage.models import ImageInventoryRow, ImagePackage
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
        os_release = None
        if head.os_id:
            os_release = OsRelease(
                id=head.os_id,
                version_id=head.os_version_id or "",
                version_codename=head.os_codename or "",
                pretty_name=head.os_pretty_name or "",
            )
        return ImageInventory(os_release=os_release, packages=packages)


def _row(repository: str, digest: str, package: Package) -> ImagePackage:
    return ImagePackage(
        repository=repository,
        digest=digest,
        ecosystem=package.ecosystem,
        name=package.name,
        version=package.version,
        purl=package.purl,
        layer=package.layer,
        path=package.path,
        source_name=package.source_name or None,
        source_version=package.source_version or None,
        arch=package.arch or None,
    )


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
