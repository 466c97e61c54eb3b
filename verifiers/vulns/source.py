"""Where the ``vulnerabilities`` verifier gets advisories: ``storage`` implements it, tests fake it.

A port like ``InventorySink``: the verifier asks for the records of one package and never sees
the tables they live in.
"""

from __future__ import annotations

from typing import Protocol

from verifiers.vulns.osv import Advisory


class AdvisorySource(Protocol):
    """Stored OSV records by package, and the version of the data they come from."""

    async def for_package(self, ecosystem: str, name: str) -> list[Advisory]: ...

    async def data_version(self) -> int: ...
