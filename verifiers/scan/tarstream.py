"""A minimal streaming tar parser for hostile input.

Why not ``tarfile`` in stream mode: it reads PAX and GNU long-name headers whole into memory
(a 4 GiB "file name" is 4 GiB of RAM), it builds a ``TarInfo`` per entry (slow for layers of a
million entries), and its errors do not say whether an archive was truncated or corrupt. This
parser reads its input in bounded pieces (:data:`FILL`), parses one 512-byte block at a time,
bounds every header it keeps, and lets the caller read at most N bytes of an entry it wants
(:meth:`TarStream.read`) or stream an entry of any size in bounded chunks
(:meth:`TarStream.chunks`); everything else is skipped as it streams by.

Formats: POSIX ustar (with ``prefix``), PAX (``x`` per-entry, ``g`` ignored), GNU long names
(``L``/``K``) and base-256 sizes, which covers what Docker, BuildKit, Buildah and ko write.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

from verifiers.scan.errors import ScanError

try:  # zlib-ng's adler32 is vectorised: 512 bytes in a fifth of stdlib zlib's time here
    from zlib_ng.zlib_ng import adler32
except ImportError:  # pragma: no cover - depends on the environment
    from zlib import adler32

BLOCK = 512
SKIP_CHUNK = 1024 * 1024
FILL = 256 * 1024
"""Bytes asked of the source per refill of the stream's buffer (``decompress.REFILL``: a
gzip reader cut short raises without what it decompressed in that call, so a larger refill
would hide more entries before a truncation)."""


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class TarError(ScanError):
    """Base of this parser's errors; ``rule_id`` names the layer problem."""

    rule_id = "layer.corrupt"


class TarTruncated(TarError):
    rule_id = "layer.truncated"


class HeaderTooLarge(TarError):
    rule_id = "layer.oversized-header"


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    DEVICE = "device"
    FIFO = "fifo"
    OTHER = "other"


_KINDS = {
    b"0": Kind.FILE,
    b"\0": Kind.FILE,
    b"7": Kind.FILE,
    b"1": Kind.HARDLINK,
    b"2": Kind.SYMLINK,
    b"3": Kind.DEVICE,
    b"4": Kind.DEVICE,
    b"5": Kind.DIR,
    b"6": Kind.FIFO,
}


class Entry(NamedTuple):
    """One member as archived; ``name`` is raw (not yet checked for ``..`` or ``/``).

    A named tuple rather than a frozen dataclass: one is built per tar entry (millions in a
    large layer), and a frozen dataclass's ``__init__`` costs twice as much."""

    name: str
    kind: Kind
    size: int
    link: str
    mode: int = 0o644
    """Permission bits including setuid/setgid/sticky (``0o4755``), as archived."""
    uid: int = 0
    gid: int = 0

    @property
    def executable(self) -> bool:
        return bool(self.mode & 0o111)


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 (sizes over 8 GiB)
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] == 0xFF else value
    try:  # the common case, octal digits padded with NULs or spaces: one C call
        return int(field.rstrip(b"\0 "), 8)
    except ValueError:
        pass  # empty, or text after a NUL: the careful reading below
    digits = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(digits, 8) if digits else 0
    except ValueError as exc:
        raise TarError(f"bad number field {digits[:20]!r}") from exc


def checksum(block: bytes) -> int:
    """The header's unsigned byte sum with its checksum field counted as spaces (POSIX).

    ``sum(block)`` walks 512 Python ints (about half the parser's time on a layer of small
    files); ``adler32``'s low half is 1 plus the byte sum modulo 65521, so one C call gives
    the exact sum of an ASCII block (at most 512 * 127 = 65024: every header of plain names),
    and two calls that of any other (a 256-byte half sums to at most 65280)."""
    if block.isascii():
        total = (adler32(block) & 0xFFFF) - 1
    else:
        total = (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2
    return total - sum(block[148:156]) + 8 * 0x20


_ZERO_BLOCK = bytes(BLOCK)
_META = frozenset((b"x", b"g", b"L", b"K"))


def _checksum_and_size(block: bytes) -> tuple[int, int]:
    """:func:`_number` of the checksum and size fields; the fast path is the one it takes first
    (octal digits padded with NULs or spaces), for both fields in one ``try``: ``int()`` never
    accepts a base-256 field's high first byte, so such a field takes the careful reading."""
    try:
        return int(block[148:156].rstrip(b"\0 "), 8), int(block[124:136].rstrip(b"\0 "), 8)
    except ValueError:
        return _number(block[148:156]), _number(block[124:136])


def _mode_uid_gid(block: bytes) -> tuple[int, int, int]:
    """:func:`_number` of the mode, uid and gid fields, as :func:`_checksum_and_size`."""
    try:
        return (
            int(block[100:108].rstrip(b"\0 "), 8),
            int(block[108:116].rstrip(b"\0 "), 8),
            int(block[116:124].rstrip(b"\0 "), 8),
        )
    except ValueError:
        return _number(block[100:108]), _number(block[108:116]), _number(block[116:124])


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    """``"<len> key=value\\n"`` records; only what entries need is kept."""
    values: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] not in (0,):
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError("malformed PAX header")
        try:
            length = int(data[pos:space])
        except ValueError as exc:
            raise TarError("malformed PAX record length") from exc
        if length <= 0 or pos + length > len(data):
            raise TarError("malformed PAX record")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key in (b"path", b"linkpath", b"size"):
            values[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return values


class TarStream:
    """Iterate entries of a tar stream; call :meth:`read` or :meth:`chunks` before the next
    entry to get data.

    The stream keeps its own buffer of what it asked the source for, :data:`FILL` bytes at a
    time: a header is a slice of it, and data nobody wants is skipped by moving a position in
    it, without a call per 512-byte block into the source (the source's own ``skip`` is used
    only past the buffer's end). That was a third of the parser's time on a layer of small
    files (``bench/README.md``, "Where the reader's time goes")."""

    def __init__(self, source: Readable, *, max_header_bytes: int) -> None:
        self._source = source
        self._max_header = max_header_bytes
        self._buffer = b""
        self._pos = 0
        """What was read from the source and not yet consumed is ``_buffer[_pos:]``."""
        self._remaining = 0
        """Bytes (data plus padding) of the current entry not yet consumed."""
        self._size_left = 0
        self.oversized_headers = 0
        skip = getattr(source, "skip", None)
        self._skipper: Callable[[int], int] | None = skip if callable(skip) else None
        """The source's own ``skip(n) -> discarded`` when it has one (``decompress.Meter``):
        data skipped past the buffer is then never copied out."""

    def _take(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or :class:`TarTruncated`."""
        pos, end = self._pos, self._pos + size
        if end <= len(self._buffer):
            self._pos = end
            return self._buffer[pos:end]
        parts = [self._buffer[pos:]]
        got = len(parts[0])
        self._buffer, self._pos = b"", 0
        while got < size:
            more = self._source.read(max(size - got, FILL))
            if not more:
                raise TarTruncated(f"archive ends {size - got} bytes early")
            if got + len(more) > size:  # keep the rest for the next header
                self._buffer, self._pos = more, size - got
                more = more[: size - got]
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def _next_block(self) -> bytes:
        """The next header block from past the buffer's end; ``b""`` at a clean end."""
        rest = self._buffer[self._pos :]
        self._buffer, self._pos = b"", 0
        more = self._source.read(FILL)
        if not more and not rest:
            return b""  # no end-of-archive blocks: lenient, like GNU tar
        self._buffer = rest + more if rest else more
        return self._take(BLOCK)

    def _piece(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer at the buffer's end), ``b""`` at the end of the stream."""
        available = len(self._buffer) - self._pos
        if available <= 0:
            if size >= FILL:  # a large piece straight from the source, not through the buffer
                return self._source.read(size)
            self._buffer, self._pos = self._source.read(FILL), 0
            available = len(self._buffer)
        pos = self._pos
        self._pos = pos + min(size, available)
        return self._buffer[pos : self._pos]

    def _skip(self, size: int) -> None:
        available = len(self._buffer) - self._pos
        if size <= available:
            self._pos += size
            return
        size -= available
        self._buffer, self._pos = b"", 0
        if self._skipper is not None:
            if self._skipper(size) < size:
                raise TarTruncated("archive ends inside an entry's data")
            return
        while size > 0:
            step = min(size, SKIP_CHUNK)
            self._take(step)
            size -= step

    def read(self, limit: int) -> bytes | None:
        """The current entry's data if it is at most ``limit`` bytes, else None (skipped)."""
        if self._size_left > limit:
            return None
        data = self._take(self._size_left)
        self._remaining -= self._size_left
        self._size_left = 0
        return data

    def chunks(self, size: int = SKIP_CHUNK) -> Iterator[bytes]:
        """The current entry's data in pieces of at most ``size`` bytes, read as they are
        iterated, so a file of any size passes through without being held whole.

        Stopping early is fine: what is left is skipped before the next entry."""
        if size <= 0:
            raise ValueError("chunk size must be positive")
        while self._size_left > 0:
            data = self._piece(min(size, self._size_left))
            if not data:
                raise TarTruncated("archive ends inside an entry's data")
            self._size_left -= len(data)
            self._remaining -= len(data)
            yield data

    def _header_data(self, size: int) -> bytes | None:
        padded = -(-size // BLOCK) * BLOCK
        if size > self._max_header:
            self.oversized_headers += 1
            self._skip(padded)
            return None
        return self._take(padded)[:size]

    def __iter__(self) -> Iterator[Entry]:
        """The hot loop of every scan (once per header, two per entry in PAX archives): a
        header is a slice of the buffer, numbers take one call (:func:`_checksum_and_size`)."""
        pax: dict[str, str] = {}
        long_name = long_link = None
        while True:
            pos = self._pos + self._remaining  # past the current entry's data
            if pos + BLOCK <= len(self._buffer):  # the usual case: the next header is here
                self._pos = pos + BLOCK
                block = self._buffer[pos : pos + BLOCK]
            else:
                self._skip(self._remaining)
                block = self._next_block()
                if not block:
                    return
            self._remaining = self._size_left = 0
            if block == _ZERO_BLOCK:
                return
            stored, size = _checksum_and_size(block)
            if stored != checksum(block):
                raise TarError("header checksum mismatch")
            flag = block[156:157]
            if size < 0:
                raise TarError("negative entry size")
            if flag in _META:
                data = self._header_data(size)
                if data is None:
                    continue
                if flag == b"x":
                    pax = _pax(data)
                elif flag == b"L":
                    long_name = _text(data)
                elif flag == b"K":
                    long_link = _text(data)
                continue
            name = _text(block[0:100])
            if block[257:263] == b"ustar\0" and block[345] != 0:
                name = _text(block[345:500]) + "/" + name
            link = _text(block[157:257]) if block[157] else ""  # most entries link nowhere
            if pax:
                name = pax.get("path") or long_name or name
                link = pax.get("linkpath") or long_link or link
                if "size" in pax:
                    # isascii: str.isdigit() accepts '²', which int() then rejects.
                    text = pax["size"]
                    size = int(text) if text.isascii() and text.isdigit() else size
                pax = {}
            else:
                name = long_name or name
                link = long_link or link
            long_name = long_link = None
            kind = _KINDS.get(flag, Kind.OTHER)
            if flag == b"\0" and name.endswith("/"):  # pre-POSIX directories
                kind = Kind.DIR
            if kind is not Kind.FILE and kind is not Kind.OTHER:
                size = 0  # like tarfile and GNU tar: only regular members carry data
            self._size_left = size
            self._remaining = -(-size // BLOCK) * BLOCK
            mode, uid, gid = _mode_uid_gid(block)
            yield Entry(name, kind, size, link, mode & 0o7777, uid, gid)
