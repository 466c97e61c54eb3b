"""One module per package ecosystem: which files hold its package database, and a parser.

Each parser takes the file's path and bytes and returns packages (or an OS release); it never
raises on bad data, it logs and skips (a corrupt ``METADATA`` must not hide the other packages).
Most formats live at known paths (``matches``); Go binaries can be any executable, so an
ecosystem may also choose files by their tar metadata (``selects``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from verifiers.scan.model import Package
from verifiers.scan.tarstream import Entry


@dataclass(frozen=True)
class Ecosystem:
    """A package database format: the paths it lives at and how to read it."""

    name: str
    matches: Callable[[str], bool]
    """Whether a file at this path is one of its databases (``var/lib/dpkg/status``)."""
    parse: Callable[[str, bytes], list[Package]]
    selects: Callable[[str, Entry], bool] | None = None
    """Chooses files by path and tar metadata (mode, size) when a path alone cannot tell."""

    def wants(self, path: str, entry: Entry) -> bool:
        return self.matches(path) or (self.selects is not None and self.selects(path, entry))


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
