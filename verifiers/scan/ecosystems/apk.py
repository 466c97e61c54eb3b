"""Alpine packages: ``lib/apk/db/installed``.

The format (apk-tools' "installed database") is stanzas of one-letter fields separated by a
blank line: ``P`` name, ``V`` version, ``A`` architecture, ``o`` origin (the source package
advisories name). Other letters (files, checksums) are ignored.
"""

from __future__ import annotations

from verifiers.scan.ecosystems import Ecosystem
from verifiers.scan.model import Package

INSTALLED = "lib/apk/db/installed"


def matches(path: str) -> bool:
    return path == INSTALLED


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
        elif len(line) >= 2 and line[1] == ":":
            current.setdefault(line[0], line[2:].strip())
    if current:
        stanzas.append(current)
    return stanzas


def parse(path: str, data: bytes) -> list[Package]:
    packages = []
    for fields in _stanzas(data.decode("utf-8", "replace")):
        name, version = fields.get("P", ""), fields.get("V", "")
        if name and version:
            packages.append(
                Package(
                    ecosystem="apk",
                    name=name,
                    version=version,
                    path=path,
                    source_name=fields.get("o", name),
                    arch=fields.get("A", ""),
                )
            )
    return packages


ECOSYSTEM = Ecosystem("apk", matches, parse)
