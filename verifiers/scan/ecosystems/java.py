"""Java archives: ``*.jar``, ``*.war`` and ``*.ear`` files, and the archives inside them.

Maven writes ``META-INF/maven/<groupId>/<artifactId>/pom.properties`` into every artifact it
builds, and shading plugins keep those of the jars they inline, so each one is a package with
its real Maven coordinates (``pkg:maven/<group>/<artifact>@<version>``; OSV's Maven ecosystem
names it ``group:artifact``).

The archive itself is named like syft names it: by the ``pom.properties`` whose artifact id
matches the file name, else (built by Ant, or holding only shaded dependencies' poms, like
Debian's ``guice.jar``) by its file name (``aopalliance-1.0.jar``) or manifest, with the version
from the file name, else ``Implementation-Version``, ``Specification-Version`` or
``Bundle-Version``. An archive with no version anywhere is not listed (syft lists ``UNKNOWN``).

The zip is opened from bytes in memory and treated as hostile: every member is read through a
bounded ``read`` (a zip bomb stops at the bound), and archives nested in the archive
(``WEB-INF/lib/*.jar``) are read one level deep, each and all together within a byte budget.
"""

from __future__ import annotations

import io
import logging
import lzma
import re
import zipfile
import zlib
from dataclasses import dataclass

from verifiers.scan.ecosystems import Ecosystem
from verifiers.scan.model import Package

log = logging.getLogger("gatekeeper.scan")

SUFFIXES = (".jar", ".war", ".ear")
MAX_MEMBERS = 200_000
"""Members of one archive; more is not a real jar (the largest fat jars have ~50k)."""
MAX_SMALL_FILE = 256 * 1024
"""A ``pom.properties`` or ``MANIFEST.MF`` larger than this is not read."""
MAX_NESTED_BYTES = 64 * 1024 * 1024
"""One nested archive, decompressed; also the budget for all nested archives of one file."""
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,  # an unknown compression method or zip version
    RuntimeError,  # an encrypted member
    zlib.error,
    lzma.LZMAError,
)
"""What ``zipfile`` raises on a corrupt or unsupported archive (its errors are not one tree)."""
_POM = re.compile(r"META-INF/maven/[^/]+/[^/]+/pom\.properties")
_VERSION_START = re.compile(r"(?i)^(\d|build\d|rc?\d+$)")
_TRAILING_VERSION = re.compile(r"[._-](\d.*)$")
_PROPERTY = re.compile(r"([^=:\s]+)\s*[=:\s]\s*(.*)")


@dataclass(frozen=True)
class Coordinates:
    """Maven ``groupId``, ``artifactId`` and ``version``."""

    group: str
    artifact: str
    version: str


def matches(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


class _Budget:
    """Bytes of nested archives still allowed to be inflated for one outer archive."""

    def __init__(self, left: int) -> None:
        self.left = left


def parse(path: str, data: bytes) -> list[Package]:
    budget = _Budget(MAX_NESTED_BYTES)
    found = _archive(path.rpartition("/")[2], data, nested=True, budget=budget)
    return [
        Package(ecosystem="maven", name=f"{c.group}:{c.artifact}", version=c.version, path=path)
        for c in found
    ]


def _archive(filename: str, data: bytes, *, nested: bool, budget: _Budget) -> list[Coordinates]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except _ZIP_ERRORS as exc:
        log.info("unreadable java archive %s skipped: %s", filename, exc)
        return []
    if len(members) > MAX_MEMBERS:
        log.info("java archive %s has %d members; skipped", filename, len(members))
        return []
    with archive:
        found = [c for m in members if _POM.fullmatch(m.filename) for c in _pom(archive, m)]
        if not any(names_archive(c.artifact, filename, found) for c in found):
            found.extend(_from_manifest(archive, filename))
        if nested:
            for member in members:
                if matches(member.filename) and not member.is_dir():
                    found.extend(_nested(archive, member, budget))
    return found


def _nested(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: _Budget
) -> list[Coordinates]:
    data = _read(archive, member, min(budget.left, MAX_NESTED_BYTES))
    if data is None:
        log.info("nested archive %s over the byte budget; skipped", member.filename)
        return []
    budget.left -= len(data)
    return _archive(member.filename.rpartition("/")[2], data, nested=False, budget=budget)


def _read(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes | None:
    """The member's bytes, or None when it is larger than ``limit`` or cannot be read."""
    try:
        with archive.open(member) as stream:
            data = stream.read(limit + 1)
    except _ZIP_ERRORS as exc:
        log.info("java archive member %s unreadable: %s", member.filename, exc)
        return None
    return None if len(data) > limit else data


def _pom(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> list[Coordinates]:
    data = _read(archive, member, MAX_SMALL_FILE)
    fields = properties(data.decode("utf-8", "replace")) if data else {}
    group, artifact = fields.get("groupId", ""), fields.get("artifactId", "")
    version = fields.get("version", "")
    return [Coordinates(group, artifact, version)] if group and artifact and version else []


def properties(text: str) -> dict[str, str]:
    """``key=value`` / ``key: value`` lines of a Java properties file (comments skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        found = _PROPERTY.match(line)
        if found:
            fields.setdefault(found.group(1), found.group(2).strip())
    return fields


def names_archive(artifact: str, filename: str, poms: list[Coordinates]) -> bool:
    """Whether a ``pom.properties`` with ``artifact`` describes the archive itself (syft's
    test): the file name's name part equals it when some pom has exactly that artifact id,
    else it is a prefix of the artifact id or ends with it."""
    name = filename_parts(filename)[0]
    if not artifact or not name:
        return False
    if name in {c.artifact for c in poms}:
        return artifact == name
    return artifact.startswith(name) or name.endswith(artifact)


def _from_manifest(archive: zipfile.ZipFile, filename: str) -> list[Coordinates]:
    """The archive's own identity when no ``pom.properties`` names it (syft's rules)."""
    try:
        member = archive.getinfo("META-INF/MANIFEST.MF")
    except KeyError:
        return []
    data = _read(archive, member, MAX_SMALL_FILE)
    if data is None:
        return []
    main = manifest(data.decode("utf-8", "replace"))
    name, version = filename_parts(filename)
    name = name or main.get("Bundle-Name", "") or main.get("Implementation-Title", "")
    for key in ("Implementation-Version", "Specification-Version", "Bundle-Version"):
        version = version or main.get(key, "")
    if not name or not version:
        return []
    return [Coordinates(_group(main) or name, name, version)]


def _group(main: dict[str, str]) -> str:
    """A group id from the manifest: the vendor id, else a dotted ``Bundle-SymbolicName``."""
    symbolic = main.get("Bundle-SymbolicName", "").split(";")[0].strip()
    return main.get("Implementation-Vendor-Id", "") or (symbolic if "." in symbolic else "")


def manifest(text: str) -> dict[str, str]:
    """The main section of a ``MANIFEST.MF``: ``Key: value`` lines, continuations joined."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            break  # the main section ends at the first blank line
        if line.startswith(" ") and last:
            fields[last] += line[1:]
        else:
            key, sep, value = line.partition(":")
            if sep:
                last = key.strip()
                fields[last] = value.strip()
    return fields


def filename_parts(filename: str) -> tuple[str, str]:
    """``guice-no-aop-4.2.3.jar`` -> (``guice-no-aop``, ``4.2.3``): the version starts at the
    first dash-separated part that begins with a digit (or ``build1``, ``r4``, ``rc2``)."""
    stem = filename.rpartition(".")[0] if "." in filename else filename
    parts = stem.split("-")
    for index in range(1, len(parts)):
        if _VERSION_START.match(parts[index]):
            return "-".join(parts[:index]), "-".join(parts[index:])
    trailing = _TRAILING_VERSION.search(stem)
    if trailing and trailing.start() > 0:
        return stem[: trailing.start()], trailing.group(1)
    return stem, ""


ECOSYSTEM = Ecosystem("maven", matches, parse)
