"""Debian packages: ``var/lib/dpkg/status`` and distroless ``var/lib/dpkg/status.d/*``.

Only packages whose ``Status`` says installed count (``deinstall ok config-files`` leaves a
paragraph behind). The source package (``Source: name (version)``) is kept because Debian's
security tracker and OSV key advisories by it.
"""

from __future__ import annotations

import logging

from verifiers.scan.ecosystems import Ecosystem, rfc822_paragraphs
from verifiers.scan.model import Package

log = logging.getLogger("gatekeeper.scan")

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"


def matches(path: str) -> bool:
    if path == STATUS:
        return True
    if not path.startswith(STATUS_D):
        return False
    name = path[len(STATUS_D) :]
    return "/" not in name and not name.endswith(".md5sums")


def _installed(fields: dict[str, str]) -> bool:
    status = fields.get("Status")
    return status is None or status.split()[-1:] == ["installed"]


def parse(path: str, data: bytes) -> list[Package]:
    packages = []
    for fields in rfc822_paragraphs(data.decode("utf-8", "replace")):
        name, version = fields.get("Package", ""), fields.get("Version", "")
        if not name or not version or not _installed(fields):
            continue
        source, _, rest = fields.get("Source", "").partition(" ")
        source_version = rest.strip().strip("()") if rest else ""
        packages.append(
            Package(
                ecosystem="deb",
                name=name,
                version=version,
                path=path,
                source_name=source or name,
                source_version=source_version or version,
                arch=fields.get("Architecture", ""),
            )
        )
    return packages


ECOSYSTEM = Ecosystem("deb", matches, parse)
