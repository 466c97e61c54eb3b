"""Which findings a VEX product names: an image by digest, a package by purl.

An image is named by its manifest digest (``sha256:...``) or an OCI purl whose version is the
digest (``pkg:oci/app@sha256%3A...``). Any other purl names a package: a finding of the
``vulnerabilities`` verifier is about it when the purl's type is the finding's ecosystem and
its name is the installed package's (or, for Debian and Alpine, the source package's, which
the advisories name); a purl with a version names only that version. Namespaces are part of
the name where the ecosystem's names carry them (npm scopes, Maven groups, Go module paths)
and ignored where they only name the distribution (``pkg:deb/debian/...``).

A finding's ecosystem, name and version are read from what the verifier recorded (its
evidence ``PyPI cryptography 38.0.4``, its title ``cryptography 38.0.4: ...``), never from the
pusher's labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from packageurl import PackageURL

from verifiers.base import Finding
from verifiers.vulns.ecosystems import inventory_ecosystem, normalize

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_NAMESPACED = {"npm": "/", "maven": ":", "golang": "/"}
_OSV_OF_TYPE = {"pypi": "PyPI", "npm": "npm", "golang": "Go", "maven": "Maven"}


@dataclass(frozen=True)
class Target:
    """What one product names: an image (``digest``), a package (``package``, a purl), or a
    package within an image (both)."""

    digest: str | None = None
    package: str | None = None


def name_target(name: str) -> Target | None:
    """The target ``name`` (an ``@id`` or a purl identifier) names, None for what a gate
    cannot match (a URL, a CPE, a malformed purl)."""
    if DIGEST.fullmatch(name):
        return Target(digest=name)
    purl = parse_purl(name)
    if purl is None:
        return None
    if purl.type == "oci":
        version = purl.version or ""
        return Target(digest=version) if DIGEST.fullmatch(version) else None
    return Target(package=name)


@lru_cache(maxsize=4096)
def parse_purl(text: str) -> PackageURL | None:
    if not text.startswith("pkg:"):
        return None
    try:
        return PackageURL.from_string(text)
    except ValueError:
        return None


def _full_name(purl: PackageURL) -> str:
    joiner = _NAMESPACED.get(purl.type)
    name = f"{purl.namespace}{joiner}{purl.name}" if joiner and purl.namespace else purl.name
    osv = _OSV_OF_TYPE.get(purl.type)
    return normalize(osv, name) if osv else name


@dataclass(frozen=True)
class FoundPackage:
    """The package a vulnerability finding is about, as the verifier recorded it."""

    ecosystem: str
    """The inventory's purl type (``pypi``, ``deb``)."""
    names: tuple[tuple[str, str], ...]
    """(name, version) pairs: the installed package, and the one the advisory was looked up
    by (a Debian source package) when it differs."""


def found_package(finding: Finding) -> FoundPackage | None:
    """None for a finding that is not about a package version."""
    if finding.fix is None:
        return None
    evidence = finding.evidence.split(";", 1)[0].split(" ")
    if len(evidence) < 3:
        return None
    ecosystem = inventory_ecosystem(" ".join(evidence[:-2]))
    if ecosystem is None:
        return None
    queried = (evidence[-2], evidence[-1])
    name, _, rest = finding.title.partition(" ")
    installed = (name, rest.partition(": ")[0])
    return FoundPackage(ecosystem, tuple(dict.fromkeys([installed, queried])))


def package_matches(purl_text: str, finding: Finding) -> bool:
    """Whether the purl names the package ``finding`` is about."""
    purl = parse_purl(purl_text)
    found = found_package(finding)
    if purl is None or found is None or purl.type != found.ecosystem:
        return False
    wanted = _full_name(purl)
    osv = _OSV_OF_TYPE.get(purl.type)
    for name, version in found.names:
        if (normalize(osv, name) if osv else name) != wanted:
            continue
        if purl.version is None or purl.version == version:
            return True
    return False


def aliases_of(finding: Finding) -> tuple[str, ...]:
    """The other ids of a vulnerability finding's advisory (``aliases: CVE-1, GHSA-...`` in
    its evidence), so a statement about ``CVE-2023-49083`` meets the finding of
    ``PYSEC-2023-254`` that aliases it."""
    _, sep, aliases = finding.evidence.partition("; aliases: ")
    if not sep or finding.fix is None:
        return ()
    return tuple(a.strip() for a in aliases.split(",") if a.strip())
