"""npm packages: ``node_modules/<name>/package.json`` and ``node_modules/@scope/<name>/...``.

Only the manifest directly in a package directory under ``node_modules`` is an installed
package; other ``package.json`` files (test fixtures, nested ``lib/``) are not.
"""

from __future__ import annotations

import json
import logging

from verifiers.scan.ecosystems import Ecosystem
from verifiers.scan.model import Package

log = logging.getLogger("gatekeeper.scan")


def matches(path: str) -> bool:
    parts = path.split("/")
    if len(parts) < 3 or parts[-1] != "package.json":
        return False
    if parts[-3] == "node_modules":
        return not parts[-2].startswith("@")
    return len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")


def parse(path: str, data: bytes) -> list[Package]:
    try:
        doc = json.loads(data)
    except ValueError:
        log.info("unreadable package.json skipped: %s", path)
        return []
    if not isinstance(doc, dict):
        return []
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    return [Package(ecosystem="npm", name=name, version=version, path=path)]


ECOSYSTEM = Ecosystem("npm", matches, parse)
