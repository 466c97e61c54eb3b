"""The ``vulnerabilities`` verifier: the image's packages matched against stored OSV advisories.

Design: it builds the inventory the same way ``inventory`` does (same functions, same per-layer
cache entries) instead of reading the stored inventory, because both run concurrently in one
pipeline and the stored inventory may not exist yet on the first verification. The layer
cache plus the shared layer reads (``Stores.reads``) make that cost nothing: a layer is read
once per process however many verifiers want it, and a re-verification after an advisory
import reads no layer at all. Give it the same ``options`` (scan limits) as ``inventory`` so
the cache keys agree.

Its ``version`` carries the advisory-data version it matched against, so the verdict's
``data_versions`` says which import produced the findings.
"""

from __future__ import annotations

from typing import Any

from verifiers.base import Finding, Image, Skipped, VerifierError, Versioned
from verifiers.scan.inventory import merge
from verifiers.scan.model import Package
from verifiers.scan.verifier import InventoryVerifier
from verifiers.stores import Stores
from verifiers.vulns import assess
from verifiers.vulns.ecosystems import Query, query_for
from verifiers.vulns.match import Match, matches
from verifiers.vulns.osv import Advisory
from verifiers.vulns.source import AdvisorySource

NAME = "vulnerabilities"
SCHEMA = "1"


class VulnerabilityVerifier:
    """One finding per (package, advisory); rule id = advisory id, so waivers name it."""

    name = NAME
    needs = ("inventory",)
    """Run beside it: the inventory verifier stores the inventory this one matches, which an
    advisory import re-matches later without reading a layer."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self._scanner = InventoryVerifier(options)
        self._source: AdvisorySource | None = None
        self.version = f"{SCHEMA}.advisories"
        """The family; each result carries its own, with the advisory-data version it used."""

    def attach(self, stores: Stores) -> None:
        # the inventory scanner's sink is never used: only ``partials`` is called
        self._scanner.attach(stores)
        self._source = stores.advisories

    async def verify(self, image: Image) -> Versioned | Skipped:
        if self._source is None:
            raise VerifierError("no advisory store attached: cannot match vulnerabilities")
        partials = await self._scanner.partials(image)
        if isinstance(partials, Skipped):
            return partials
        # Read before matching: an import landing meanwhile is then never claimed as matched
        # (its own re-evaluation covers this image).
        data_version = await self._source.data_version()
        inventory = merge(partials)
        known: dict[tuple[str, str], list[Advisory]] = {}
        findings: list[Finding] = []
        for package in inventory.packages:
            query = query_for(package, inventory.os_release)
            if query is None:
                continue
            key = (query.ecosystem, query.name)
            if key not in known:
                known[key] = await self._source.for_package(*key)
            found = matches(known[key], query.ecosystem, query.name, query.version)
            findings += (_finding(package, query, m) for m in found)
        return Versioned(findings, f"{SCHEMA}.advisories-{data_version}")


def _finding(package: Package, query: Query, match: Match) -> Finding:
    # One definition shared with re-evaluation (services/reevaluate.py), so both agree.
    return assess.finding(package, query, match)
