"""Hostile or malformed tar streams built byte by byte, shared by the layer reader's unit tests,
the fuzz regressions and the hostile-layer end-to-end tests: a gzip bomb, a million entries, a
PAX header with an arbitrary ``size`` record."""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator


def gzip_bomb(gib: int) -> Iterator[bytes]:
    """A tar with one file of ``gib`` GiB of zeros, as concatenated gzip members (each member
    64 MiB of zeros compressed once and repeated), so the test builds it in well under a second."""
    size = gib * 1024**3
    info = tarfile.TarInfo("zeros")
    info.size = size
    yield gzip.compress(info.tobuf(tarfile.PAX_FORMAT), 1)
    member = gzip.compress(bytes(64 * 1024**2), 9)
    for _ in range(size // (64 * 1024**2)):
        yield member
    yield gzip.compress(bytes(1024), 1)


def many_entries(count: int) -> Iterator[bytes]:
    """``count`` empty files with distinct names, gzip'd as they are generated."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    template = tarfile.TarInfo("f0000000").tobuf(tarfile.USTAR_FORMAT)
    head, tail = template[1:8], template[8:148]
    base = sum(template) - sum(template[148:156]) + 256 - sum(head)
    batch = []
    for n in range(count):
        digits = b"%07d" % n
        checksum = b"%06o\0 " % (base + sum(digits))
        batch.append(b"f" + digits + tail + checksum + template[156:])
        if len(batch) == 20_000:
            yield compressor.compress(b"".join(batch))
            batch = []
    yield compressor.compress(b"".join(batch) + bytes(1024)) + compressor.flush()


def pax_file(pax_size: str, data: bytes = b"abc") -> bytes:
    """A PAX extended header whose ``size`` record is ``pax_size``, then a file of ``data``."""
    text = f" size={pax_size}\n".encode()
    length = len(text) + 1
    while len(str(length)) + len(text) != length:  # the length counts its own digits
        length += 1
    record = str(length).encode() + text
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(record)
    member = tarfile.TarInfo("f")
    member.size = len(data)

    def padded(raw: bytes) -> bytes:
        return raw + b"\0" * (-len(raw) % 512)

    return (
        header.tobuf(tarfile.USTAR_FORMAT)
        + padded(record)
        + member.tobuf(tarfile.USTAR_FORMAT)
        + padded(data)
        + b"\0" * 1024
    )
