"""How an installed package is looked up in OSV: which ecosystem, name and version.

The inventory speaks purl types (``deb``, ``apk``, ``rpm``, ``pypi``, ``npm``, ``golang``,
``maven``); OSV speaks its own ecosystem names, with the distro release for OS packages
(``Debian:12``). Debian and Alpine advisories name the *source* package, so those are looked
up by source name and version. PyPI names are compared in their PEP 503 normal form
(``Werkzeug`` is ``werkzeug``). Maven names are ``groupId:artifactId`` on both sides; the Go
toolchain is OSV's ``stdlib``.

RPM packages are looked up only for distributions whose OSV ecosystem follows from
``os-release`` alone and names *binary* packages with ``[epoch:]version-release`` versions:
AlmaLinux (``AlmaLinux:9``), Rocky Linux (``Rocky Linux:9``), Mageia (``Mageia:9``) and
openSUSE Leap (``openSUSE:Leap 15.5``). Red Hat's advisories are keyed by CPE-derived
product streams (``Red Hat:enterprise_linux:9::appstream``) that an image does not record,
and Fedora, Amazon Linux and CentOS have no OSV feed: their RPMs stay unmatched.
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
    if package.ecosystem == "maven":
        return Query("Maven", package.name, package.version)
    release = os_release.version_id if os_release else ""
    if package.ecosystem == "rpm":
        ecosystem = rpm_ecosystem(os_release)
        return Query(ecosystem, package.name, package.version) if ecosystem else None
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


_RPM_DISTROS = {"almalinux": "AlmaLinux", "rocky": "Rocky Linux", "mageia": "Mageia"}


def rpm_ecosystem(os_release: OsRelease | None) -> str | None:
    """OSV's ecosystem for the RPM distribution ``os_release`` names (None if it has none)."""
    if os_release is None or not os_release.version_id:
        return None
    distro = _RPM_DISTROS.get(os_release.id)
    if distro:
        major = os_release.version_id.split(".")[0]
        return f"{distro}:{os_release.version_id if distro == 'Mageia' else major}"
    if os_release.id == "opensuse-leap":
        return f"openSUSE:Leap {os_release.version_id}"
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
        "Maven": "maven",
        "AlmaLinux": "rpm",
        "Rocky Linux": "rpm",
        "Mageia": "rpm",
        "openSUSE": "rpm",
        "Debian": "deb",
        "Ubuntu": "deb",
        "Alpine": "apk",
    }.get(base)
