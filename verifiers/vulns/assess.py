"""Packages plus advisories in, ``vulnerabilities`` findings out: the one matching step shared by
the verifier (which builds the inventory from layers) and re-evaluation (which reads the stored
inventory), so both give the same findings, title for title, for the same data.

Pure: the caller fetches the advisories (one query per package for the verifier, one per batch of
images for re-evaluation) and hands them over as a mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from verifiers.base import Finding
from verifiers.scan.model import OsRelease, Package
from verifiers.vulns.ecosystems import Query, query_for
from verifiers.vulns.match import Match, matches
from verifiers.vulns.osv import Advisory
from verifiers.vulns.severity import score

NAME = "vulnerabilities"
SCHEMA = "1"

AdvisoryKey = tuple[str, str]
"""(OSV ecosystem, normalised name): how advisories are stored and looked up."""


def version_for(data_version: int) -> str:
    """The verifier version recorded with findings matched against ``data_version``."""
    return f"{SCHEMA}.advisories-{data_version}"


def queries(
    packages: Iterable[Package], os_release: OsRelease | None, memo: Memo | None = None
) -> list[tuple[Package, Query]]:
    """Each package with its OSV lookup; packages of ecosystems OSV does not cover are left out.
    Pass one ``memo`` for many images: they share most packages."""
    cache = Memo() if memo is None else memo
    found = []
    for package in packages:
        # By identity: hashing a package's nine fields for every image costs more than the
        # lookup saves. The entry keeps both objects alive, so their ids stay theirs.
        key = (id(package), id(os_release))
        entry = cache.queries.get(key)
        if entry is None or entry[0] is not package or entry[1] is not os_release:
            entry = cache.queries[key] = (package, os_release, query_for(package, os_release))
        query = entry[2]
        if query is not None:
            found.append((package, query))
    return found


class Memo:
    """Matches and findings already computed, valid while the advisories do not change:
    images share most of their package versions, and version parsing and severity scoring are
    what matching costs."""

    def __init__(self) -> None:
        self.packages: dict[tuple[Any, ...], Any] = {}
        """Packages (and distributions) by their stored fields, so identical rows of many
        images are one object."""
        self.queries: dict[tuple[int, int], tuple[Package, OsRelease | None, Query | None]] = {}
        self.matches: dict[Query, list[Match]] = {}
        self.findings: dict[tuple[Package, Query], list[Finding]] = {}
        self.extra: dict[int, Any] = {}
        """For the caller: anything derived from one of ``findings`` (by ``id``), such as its
        stored form; valid as long as this memo, which keeps the findings alive."""


def assess(
    pairs: Iterable[tuple[Package, Query]],
    advisories: Mapping[AdvisoryKey, Sequence[Advisory]],
    memo: Memo | None = None,
) -> list[Finding]:
    """One finding per (package, advisory entry) covering the installed version. Pass the same
    ``memo`` for many images matched against the same ``advisories``."""
    cache = Memo() if memo is None else memo
    findings: list[Finding] = []
    for package, query in pairs:
        made = cache.findings.get((package, query))
        if made is None:
            found = cache.matches.get(query)
            if found is None:
                known = advisories.get((query.ecosystem, query.name))
                found = matches(known, query.ecosystem, query.name, query.version) if known else []
                cache.matches[query] = found
            made = [finding(package, query, m) for m in found]
            cache.findings[(package, query)] = made
        findings += made
    return findings


def package_of(finding: Finding) -> str:
    """The installed package a finding of :func:`finding` is about (where it was found, and the
    ``name version`` its title starts with): one advisory found in the eleven binary packages
    of one Debian source is one advisory in eleven packages, not eleven advisories."""
    name, _, rest = finding.title.partition(" ")
    return f"{finding.location}\0{name}\0{rest.partition(': ')[0]}"


def finding(package: Package, query: Query, match: Match) -> Finding:
    """The finding for one match; ``fix`` carries the fixed version ("" when none is known)."""
    advisory = match.advisory
    fix = f" (fix: {match.fixed})" if match.fixed else " (no fix known)"
    aliases = ", ".join(advisory.aliases)
    return Finding(
        verifier=NAME,
        rule_id=advisory.id,
        severity=score(advisory.raw).severity,
        title=f"{package.name} {package.version}: {advisory.summary}{fix}"[:300],
        location=f"{package.layer}:{package.path}" if package.layer else package.path,
        evidence=f"{query.ecosystem} {query.name} {query.version}"
        + (f"; aliases: {aliases}" if aliases else ""),
        fix=match.fixed,
        blob=package.layer or None,
    )
