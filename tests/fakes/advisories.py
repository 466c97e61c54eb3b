"""An advisory source held in memory, for the vulnerability verifier and the contract test."""

from __future__ import annotations

from verifiers.vulns.ecosystems import normalize
from verifiers.vulns.osv import Advisory


class MemoryAdvisories:
    """A fake of the AdvisorySource port."""

    def __init__(self, *advisories: Advisory, version: int = 7) -> None:
        self.advisories = list(advisories)
        self.version = version

    async def for_package(self, ecosystem: str, name: str) -> list[Advisory]:
        return [
            a
            for a in self.advisories
            if any(
                x.ecosystem == ecosystem and normalize(ecosystem, x.name) == name
                for x in a.affected
            )
        ]

    async def data_version(self) -> int:
        return self.version
