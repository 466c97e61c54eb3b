"""Go build info found in a binary fed in chunks, for executables too large to read whole.

A file over ``max_file_bytes`` is never held in memory, so the section table (at the end of
an ELF file) cannot lead to ``.go.buildinfo`` as it does in :func:`golang.build_info`. The
program headers (at the start) can: that section is in writable data, so only magics inside a
writable, non-executable segment are candidates (as Go's ``debug/buildinfo`` searches a binary
without sections), and bytes planted in code or read-only data are passed over. The
linker aligns that section to 16 bytes and starts it with the magic, so the search looks for
the magic at 16-byte aligned file offsets (a hit may straddle chunks) and keeps the bytes from
a hit on until it can judge it: the 32-byte header and the two length-prefixed strings, at most
:data:`MAX_WINDOW` bytes. A hit is accepted only if it is what the linker writes: the
inline-format flag, a toolchain version in UTF-8 starting with ``go`` (``devel`` for toolchains
built from source) and at most :data:`MAX_TOOLCHAIN` bytes long, and a module list whose length
prefix is within bounds and whose bytes are all there. A program importing ``debug/buildinfo``
has the magic as a string constant in its read-only data; such a hit fails these checks within
a few bytes, and the search goes on from the next aligned offset.

The module list itself is not judged (it is decoded as ``golang`` decodes it): a check that
needs the whole of a list claimed to be megabytes long would let a file of overlapping decoys
cost time quadratic in its size.
"""

from __future__ import annotations

from verifiers.scan.ecosystems.golang import (
    ALIGN,
    ELF,
    FLAG_INLINE,
    HEADER_SIZE,
    MAGIC,
    MAX_PROGRAM_HEADERS,
    MAX_STRING,
    BuildInfo,
    in_segments,
    inline,
    packages,
    program_headers_end,
    writable_segments,
)
from verifiers.scan.model import Package

MAX_VARINT = 10
"""Bytes of a uvarint that holds 64 bits."""
MAX_TOOLCHAIN = 1024
"""Longest toolchain version taken (real ones: ``go1.21.0 X:boringcrypto``, under 100 bytes),
so a false hit is told from build info after a few bytes, not after megabytes."""
MAX_WINDOW = HEADER_SIZE + 2 * MAX_VARINT + MAX_TOOLCHAIN + MAX_STRING
"""Most bytes after a magic that one build info can span (memory held while deciding)."""
TOOLCHAINS = (b"go", b"devel")
"""How a real toolchain version starts (``go1.22.1``; ``devel go1.23-abc...`` from source)."""


class _Reject(Exception):
    """The candidate magic is not build info: the search goes on after it."""


class BuildInfoSearch:
    """Feed a file in order (:meth:`feed`), then ask for :meth:`packages`.

    Only an ELF file is searched (its first four bytes); anything else is passed over as it
    is fed. The bytes kept are those from the candidate magic being judged (or the last few,
    where a magic cut by a chunk may start) to the end of what was fed: at most
    :data:`MAX_WINDOW` plus a chunk. Each candidate is judged once, so a file full of decoys
    costs time linear in its size.
    """

    def __init__(self) -> None:
        self.found: BuildInfo | None = None
        self._done = False
        self._head = b""
        """The first bytes: whether this is an ELF file, and its program headers."""
        self._ready = False
        """Whether the program headers have been read (or cannot be), so candidates can be
        judged; until then chunks only accumulate (at most :data:`MAX_PROGRAM_HEADERS`)."""
        self._segments: list[tuple[int, int]] | None = None
        """File ranges build info may be in (writable data); None: anywhere."""
        self._buffer = bytearray()
        self._buffer_at = 0
        """File offset of ``_buffer[0]``."""
        self._next = 0
        """Where in ``_buffer`` the search for the next aligned magic resumes."""
        self._candidate: int | None = None
        """Where in ``_buffer`` the magic being judged is (it waits for more bytes)."""

    def feed(self, chunk: bytes) -> None:
        if self._done or not chunk:
            return
        self._buffer += chunk
        if not self._ready:
            self._head += chunk[: MAX_PROGRAM_HEADERS - len(self._head)]
            if not ELF.startswith(self._head[: len(ELF)]):
                self._done, self._buffer = True, bytearray()
                return
            if not self._settle(end=False):
                return
        self._advance(end=False)
        self._trim()

    def _settle(self, *, end: bool) -> bool:
        """Read the program headers once they are here (or the file or the limit ends first);
        False while more bytes are needed."""
        needed = min(program_headers_end(self._head), MAX_PROGRAM_HEADERS)
        if len(self._head) < needed and not end:
            return False
        self._segments = writable_segments(self._head)
        self._ready, self._head = True, self._head[: len(ELF)]
        return True

    def packages(self, path: str) -> list[Package]:
        """After the last chunk: the packages of the build info found, as ``golang.parse``
        gives them for the whole file (none for a file that is not ELF or has none)."""
        if len(self._head) < len(ELF) or not ELF.startswith(self._head[: len(ELF)]):
            return []
        if not self._done:
            if not self._ready:
                self._settle(end=True)
            self._advance(end=True)  # a candidate cut off by the end of the file is rejected
            self._done = True
        return packages(path, self.found)

    def _advance(self, *, end: bool) -> None:
        """Judge candidates until one waits for more bytes (unless at the end) or none is left."""
        buffer = self._buffer
        while True:
            if self._candidate is None:
                at = buffer.find(MAGIC, self._next)
                while at >= 0 and (
                    (self._buffer_at + at) % ALIGN
                    or not in_segments(self._buffer_at + at, self._segments)
                ):
                    at = buffer.find(MAGIC, at + 1)
                if at < 0:
                    self._next = max(self._next, len(buffer) - (len(MAGIC) - 1))
                    return
                self._candidate = at
            try:
                found = _judge(buffer, self._candidate)
                if found is None and end:
                    raise _Reject
            except _Reject:
                self._next, self._candidate = self._candidate + 1, None
                continue
            if found is None:
                return
            self.found, self._done = found, True
            self._buffer, self._candidate, self._next = bytearray(), None, 0
            return

    def _trim(self) -> None:
        """Drop the bytes before the candidate (or the search position): a prefix deletion,
        which a ``bytearray`` does without moving the rest."""
        keep = self._next if self._candidate is None else self._candidate
        if keep > 0:
            del self._buffer[:keep]
            self._buffer_at += keep
            self._next -= keep
            if self._candidate is not None:
                self._candidate -= keep


def _judge(buffer: bytearray, at: int) -> BuildInfo | None:
    """The build info whose magic is at ``buffer[at]``; None while more bytes are needed to
    tell; :class:`_Reject` as soon as the bytes show it is not what the Go linker writes."""
    if len(buffer) < at + HEADER_SIZE:
        return None
    if not buffer[at + len(MAGIC) + 1] & FLAG_INLINE:
        raise _Reject  # or the pointer format before Go 1.18, not read (as ``golang``)
    length, start = _uvarint(buffer, at + HEADER_SIZE)
    if start < 0:
        return None
    prefix = bytes(buffer[start : start + 2])
    if not any(t.startswith(prefix) for t in TOOLCHAINS) or not 2 <= length <= MAX_TOOLCHAIN:
        raise _Reject
    if len(buffer) < start + length:
        return None
    try:
        toolchain = bytes(buffer[start : start + length]).decode()
    except UnicodeDecodeError:
        raise _Reject from None
    if not toolchain.startswith(("go", "devel")):
        raise _Reject
    length, start = _uvarint(buffer, start + length)
    if start < 0 or len(buffer) < start + length:
        return None
    found = inline(bytes(buffer[at : start + length]), 0)
    if found is None:
        raise _Reject
    return found


def _uvarint(buffer: bytearray, at: int) -> tuple[int, int]:
    """(value, offset after it) of the uvarint at ``at``; offset -1 if it is cut off here."""
    value = shift = 0
    for position in range(at, min(len(buffer), at + MAX_VARINT)):
        byte = buffer[position]
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if value > MAX_STRING:
                raise _Reject
            return value, position + 1
    if len(buffer) >= at + MAX_VARINT:
        raise _Reject
    return 0, -1
