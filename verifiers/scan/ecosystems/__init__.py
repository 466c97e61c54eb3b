"""One module per package ecosystem: which files hold its package database, and a parser.

Each parser takes the file's path and bytes and returns packages (or an OS release); it never
raises on bad data, it logs and skips (a corrupt ``METADATA`` must not hide the other packages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from verifiers.scan.model import Package


@dataclass(frozen=True)
class Ecosystem:
    """A package database format: the paths it lives at and how to read it."""

    name: str
    matches: Callable[[str], bool]
    parse: Callable[[str, bytes], list[Package]]


def rfc822_paragraphs(text: str) -> list[dict[str, str]]:
    """Debian control / Alpine-style stanzas: ``Key: value`` lines, blank-line separated,
    continuation lines (starting with a space) appended to the previous field."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, last = {}, ""
        elif line[0] in " \t":
            if last:
                current[last] += "\n" + line.strip()
        else:
            key, sep, value = line.partition(":")
            if sep:
                last = key.strip()
                current[last] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs
