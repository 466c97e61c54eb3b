"""How an installed package is looked up in OSV: which ecosystem, name and version.

The inventory speaks purl types (``deb``, ``apk``, ``pypi``, ``npm``); OSV speaks its own
ecosystem names, with the distro release for OS packages (``Debian:12``). Debian and Alpine
advisories name the *source* package, so those are looked up by source name and version.
PyPI names are compared in their PEP 503 normal form (``Werkzeug`` is ``werkzeug``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers.scan.model import OsRelease, Package


@dataclass(frozen=True)
class Query:
    """The key an advisory is stored under, and the version to test against it."""

    ecosystem: str
    name: str
    version: str


def query_for(package: Package, os_release: OsRelease | None) -> Query | None:
    """The OSV lookup for one package, or None when its ecosystem has no OSV counterpart."""
    if package.ecosystem == "pypi":
        return Query("PyPI", normalize("PyPI", package.name), package.version)
    if package.ecosystem == "npm":
        return Query("npm", package.name, package.version)
    if package.ecosystem == "golang":
        return Query("Go", package.name, package.version)
    release = os_release.version_id if os_release else ""
    source = package.source_name or package.name
    version = package.source_version or package.version
    if package.ecosystem == "deb" and release:
        distro = "Ubuntu" if os_release and os_release.id == "ubuntu" else "Debian"
        return Query(
            f"{distro}:{release.split('.')[0] if distro == 'Debian' else release}", source, version
        )
    if package.ecosystem == "apk" and release:
        major_minor = ".".join(release.split(".")[:2])
        return Query(f"Alpine:v{major_minor}", source, version)
    return None


def normalize(ecosystem: str, name: str) -> str:
    """OSV names as stored and looked up; PyPI's are case- and separator-insensitive."""
    if ecosystem == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


def inventory_ecosystem(osv_ecosystem: str) -> str | None:
    """The inventory's purl type for an OSV ecosystem (re-evaluation looks images up by it)."""
    base = osv_ecosystem.split(":", 1)[0]
    return {
        "PyPI": "pypi",
        "npm": "npm",
        "Go": "golang",
        "Debian": "deb",
        "Ubuntu": "deb",
        "Alpine": "apk",
    }.get(base)
