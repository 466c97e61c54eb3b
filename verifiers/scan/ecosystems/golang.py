"""Go binaries: the build information the Go linker embeds in every module-aware executable.

Any executable regular file may be a Go program, so files are chosen by their tar mode (an
execute bit, a plausible size), and the bytes are only parsed when they are an ELF file with a
``.go.buildinfo`` section starting with the ``\\xff Go buildinf:`` magic. Its inline format
(Go 1.18 and later) holds two length-prefixed strings: the toolchain version (``go1.19.8``) and
the module list ``go version -m`` prints (``path``, ``mod``, ``dep``, ``=>`` lines).

Packages, as syft reports them: the toolchain as ``stdlib`` (version ``go1.19.8``, purl
``pkg:golang/stdlib@1.19.8``, the name OSV's Go database uses for the standard library), the
main module, and every dependency, a replaced one (``=>``) under its replacement's path and
version, since that is the code in the binary.

Binaries up to ``max_file_bytes`` (32 MiB by default) are read whole and the build info is
found through the section table. Larger ones (CLIs such as kubectl or syft itself are 45-80
MiB) are streamed through ``golang_stream.BuildInfoSearch``, which holds only a bounded window:
it takes the first magic at a 16-byte aligned offset inside a writable data segment (from the
program headers, at the file's start) that parses as inline build info with a ``go`` toolchain
version, so the magic as a string constant in a program's read-only data (any program importing
``debug/buildinfo``) and bytes planted in code are passed over. Both give the same packages for
one binary.

Not read: binaries from Go 1.13-1.17, whose build info holds pointers into the data segment
instead of inline strings (their toolchain is out of security support), and non-ELF
executables (Mach-O, PE) which do not run in a Linux container.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import NamedTuple

from verifiers.scan.ecosystems import Ecosystem
from verifiers.scan.errors import ScanError
from verifiers.scan.model import Package
from verifiers.scan.tarstream import Entry

log = logging.getLogger("gatekeeper.scan")

MAGIC = b"\xff Go buildinf:"
HEADER_SIZE = 32
ALIGN = 16
FLAG_INLINE = 0x2
"""Header flag: version and module info follow the header as varint-prefixed strings."""
MIN_EXECUTABLE = 1024
"""Smaller executables (scripts, stubs) cannot be Go programs; they are not read at all."""
MAX_STRING = 4 * 1024 * 1024
"""Longest build-info string accepted (real module lists are a few KiB)."""
ELF = b"\x7fELF"


class BuildInfoError(ScanError, ValueError):
    """Bytes that look like Go build info but do not parse (truncated, bad lengths)."""


@dataclass(frozen=True)
class BuildInfo:
    """The two strings of a binary's build info."""

    toolchain: str
    """``go1.19.8`` (possibly followed by experiment tags: ``go1.21.0 X:boringcrypto``)."""
    modules: str
    """The module list as ``go version -m`` prints it (``path``/``mod``/``dep``/``=>``)."""


def selects(path: str, entry: Entry) -> bool:
    """Chosen by tar metadata: an executable regular file large enough to be a Go program."""
    return entry.executable and entry.size >= MIN_EXECUTABLE


def matches(path: str) -> bool:
    return False  # never chosen by path alone: see ``selects``


def parse(path: str, data: bytes) -> list[Package]:
    if not data.startswith(ELF):
        return []
    return packages(path, build_info(data))


def packages(path: str, found: BuildInfo | None) -> list[Package]:
    """The packages one binary's build info names (none without a toolchain version)."""
    if found is None or not found.toolchain:
        return []
    return [_stdlib(path, found.toolchain), *_modules(path, found.modules)]


def build_info(data: bytes) -> BuildInfo | None:
    """The build info of an ELF Go binary, or None when it has none we can read."""
    start = _section(data, b".go.buildinfo")
    if start is None:
        start = _aligned_magic(data)
    if start is None or data[start : start + len(MAGIC)] != MAGIC:
        return None
    return inline(data, start)


def inline(data: bytes, start: int) -> BuildInfo | None:
    """The Go 1.18+ inline build info whose magic is at ``start``."""
    if len(data) < start + HEADER_SIZE:
        return None
    if not data[start + len(MAGIC) + 1] & FLAG_INLINE:
        log.debug("Go build info before Go 1.18 (pointer format) not read")
        return None
    try:
        version, offset = _string(data, start + HEADER_SIZE)
        modules, _ = _string(data, offset)
    except BuildInfoError as exc:
        log.info("bad Go build info skipped: %s", exc)
        return None
    if len(modules) >= 33 and modules[-17] == "\n":
        modules = modules[16:-16]  # sentinels the linker puts around the module list
    return BuildInfo(version, modules)


def _stdlib(path: str, toolchain: str) -> Package:
    version = toolchain.split()[0] if toolchain.split() else toolchain
    return Package(ecosystem="golang", name="stdlib", version=version, path=path)


def _modules(path: str, text: str) -> list[Package]:
    """``mod`` and ``dep`` lines, each ``dep`` replaced by a following ``=>`` line if any.

    A program of the standard distribution (``cmd/go``, ``cmd/vet``) has no ``mod`` line: its
    main package path stands for the main module, at version ``(devel)`` (as syft lists it)."""
    found: list[tuple[str, str]] = []
    main = ""
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == "path" and len(fields) >= 2:
            main = fields[1]
        elif fields[0] in ("mod", "dep") and len(fields) >= 3:
            found.append((fields[1], fields[2]))
            main = "" if fields[0] == "mod" else main
        elif fields[0] == "=>" and len(fields) >= 3 and found:
            found[-1] = (fields[1], fields[2])
    if main:
        found.insert(0, (main, "(devel)"))
    return [
        Package(ecosystem="golang", name=name, version=version, path=path)
        for name, version in found
        if name and version
    ]


def _string(data: bytes, offset: int) -> tuple[str, int]:
    """A uvarint-length-prefixed string at ``offset``, and the offset after it."""
    length, shift, position = 0, 0, offset
    while True:
        if position >= len(data) or shift > 63:
            raise BuildInfoError("length prefix runs past the data")
        byte = data[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    if length > MAX_STRING or position + length > len(data):
        raise BuildInfoError(f"string of {length} bytes runs past the data")
    end = position + length
    return data[position:end].decode("utf-8", "replace"), end


def _section(data: bytes, wanted: bytes) -> int | None:
    """File offset of the ELF section named ``wanted`` (None if absent or the table is bad)."""
    if len(data) < 64 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if wide:
            (table,) = struct.unpack_from(order + "Q", data, 0x28)
            size, count, names = struct.unpack_from(order + "HHH", data, 0x3A)
            layout = order + "II" + "QQQQ"  # name, type, flags, addr, offset, size
        else:
            (table,) = struct.unpack_from(order + "I", data, 0x20)
            size, count, names = struct.unpack_from(order + "HHH", data, 0x2E)
            layout = order + "II" + "IIII"
        if count == 0 or names >= count or size < struct.calcsize(layout):
            return None
        if table + count * size > len(data):
            return None
        headers = [struct.unpack_from(layout, data, table + i * size) for i in range(count)]
        strings_at, strings_size = headers[names][4], headers[names][5]
        if strings_at + strings_size > len(data):
            return None
        strings = data[strings_at : strings_at + strings_size]
        for name, _type, _flags, _addr, offset, length in headers:
            end = strings.find(b"\0", name)
            if 0 <= name < len(strings) and end >= 0 and strings[name:end] == wanted:
                return int(offset) if offset + length <= len(data) else None
    except struct.error:
        return None
    return None


def _aligned_magic(data: bytes) -> int | None:
    """The magic at a 16-byte aligned offset in writable data, for ELF files without a section
    table (as Go's ``debug/buildinfo`` searches them)."""
    if _has_sections(data):
        return None
    segments = writable_segments(data)
    at = data.find(MAGIC)
    while at >= 0:
        if at % ALIGN == 0 and in_segments(at, segments):
            return at
        at = data.find(MAGIC, at + 1)
    return None


PT_LOAD = 1
PF_X, PF_W = 1, 2
MAX_PROGRAM_HEADERS = 64 * 1024
"""Bytes from the file's start that may hold the program headers (real binaries: under 1 KiB,
right after the 64-byte ELF header); tables further in are not read."""


class _ProgramTable(NamedTuple):
    """Where the ELF header says the program headers are, and how to read them."""

    wide: bool
    order: str
    start: int
    size: int
    entries: int

    @property
    def end(self) -> int:
        return self.start + self.size * self.entries


def _program_table(head: bytes) -> _ProgramTable | None:
    """The program header table's place, from the ELF header (None without a valid one)."""
    if len(head) < 64 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    (start,) = struct.unpack_from(order + ("Q" if wide else "I"), head, 0x20 if wide else 0x1C)
    size, count = struct.unpack_from(order + "HH", head, 0x36 if wide else 0x2A)
    return _ProgramTable(wide, order, int(start), int(size), int(count))


def program_headers_end(head: bytes) -> int:
    """How many bytes from the start hold the ELF header and the program headers (64 until the
    header says more); may exceed :data:`MAX_PROGRAM_HEADERS` for a hostile header."""
    table = _program_table(head)
    return 64 if table is None else max(64, table.end)


def writable_segments(head: bytes) -> list[tuple[int, int]] | None:
    """File ranges of the loadable segments that are writable and not executable, or None if
    ``head`` does not hold readable program headers (then nothing can be ruled out: a scanner
    would rather report a package too many than miss one).

    The Go linker puts ``.go.buildinfo`` in writable data (first in the data segment when it
    links; among the data sections when the system linker does), and Go's ``debug/buildinfo``
    looks there when a binary has no section table. A magic outside (a string constant in
    read-only data, or bytes planted in code) is not build info.
    """
    table = _program_table(head)
    if table is None:
        return None
    # 64-bit: type, flags, offset, vaddr, paddr, filesz; 32-bit: type, offset, vaddr, paddr,
    # filesz, memsz, flags.
    layout = table.order + ("IIQQQQ" if table.wide else "IIIIIII")
    if table.start == 0 or table.entries == 0 or table.size < struct.calcsize(layout):
        return None
    if table.end > len(head):
        return None
    found = []
    for at in range(table.start, table.end, table.size):
        fields = struct.unpack_from(layout, head, at)
        if table.wide:
            kind, flags, offset, _, _, length = fields
        else:
            kind, offset, _, _, length, _, flags = fields
        if kind == PT_LOAD and flags & (PF_X | PF_W) == PF_W:
            found.append((int(offset), int(offset) + int(length)))
    return found


def in_segments(offset: int, segments: list[tuple[int, int]] | None) -> bool:
    """Whether build info may start at ``offset`` (anywhere, when the segments are unknown)."""
    return segments is None or any(start <= offset < end for start, end in segments)


def _has_sections(data: bytes) -> bool:
    if len(data) < 64 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return False
    order = "<" if data[5] == 1 else ">"
    at = 0x3C if data[4] == 2 else 0x30
    return bool(struct.unpack_from(order + "H", data, at)[0])


ECOSYSTEM = Ecosystem("golang", matches, parse, selects)
