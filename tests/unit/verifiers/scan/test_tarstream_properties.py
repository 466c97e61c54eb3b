"""Property tests: the tar parser and the layer reader on arbitrary and mutated archives.

The parser may only raise its own :class:`TarError`; the reader may raise nothing at all
(every problem is a finding). Sizes are bounded so each example stays small and fast.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.targets import LIMITS, AllFiles, BytesSource
from tests.support.tars import pax_file
from verifiers.scan.reader import Part, normalise, read_parts, read_tar
from verifiers.scan.tarstream import (
    Entry,
    TarError,
    TarStream,
    _checksum_and_size,
    _mode_uid_gid,
    _number,
    checksum,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _archive(members: list[tuple[str, bytes]], fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


names = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=120)
members = st.lists(st.tuples(names, st.binary(max_size=600)), max_size=4)
archives = st.builds(_archive, members, st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid archive with a few bytes overwritten (headers are where the parser is)."""
    data = bytearray(draw(archives))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if data:
            data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def assert_parser_contained(data: bytes) -> None:
    try:
        for entry in TarStream(io.BytesIO(data), max_header_bytes=LIMITS.max_header_bytes):
            assert entry.size >= 0
    except TarError:
        pass


def assert_reader_contained(data: bytes) -> None:
    for payload in (data, gzip.compress(data, mtime=0)):
        report = read_tar(BytesSource(payload), LIMITS, AllFiles(), time.monotonic() + 30)
        assert report.entries <= LIMITS.max_entries + 1


@FAST
@given(st.one_of(st.binary(max_size=4096), mutated()))
def test_tar_parser_raises_only_tar_errors(data: bytes) -> None:
    assert_parser_contained(data)


@FAST
@given(st.one_of(st.binary(max_size=4096), mutated()))
def test_layer_reader_never_raises(data: bytes) -> None:
    assert_reader_contained(data)


@FAST
@given(members)
def test_valid_archives_parse_to_their_members(entries: list[tuple[str, bytes]]) -> None:
    stream = TarStream(io.BytesIO(_archive(entries, tarfile.PAX_FORMAT)), max_header_bytes=1 << 20)
    seen = []
    for entry in stream:
        seen.append((entry.name, stream.read(1 << 20)))
    assert seen == entries


class Streamed:
    """Streams every file (the per-file limit is one byte) and checks each sink's bounds."""

    def __init__(self) -> None:
        self.fed: dict[str, int] = {}

    def wants(self, path: str, entry: Entry) -> bool:
        return True

    def visit(self, path: str, data: bytes) -> None:
        assert len(data) <= 1

    def stream(self, path: str, entry: Entry) -> Streamed.Sink:
        return Streamed.Sink(self, path, entry.size)

    class Sink:
        def __init__(self, owner: Streamed, path: str, size: int) -> None:
            self.owner, self.path, self.size, self.got = owner, path, size, 0

        def feed(self, chunk: bytes) -> None:
            assert len(chunk) > 0 and self.got + len(chunk) <= self.size
            self.got += len(chunk)

        def close(self) -> None:
            assert self.got == self.size  # closed only after the whole file
            self.owner.fed[self.path] = self.got


@FAST
@given(st.one_of(st.binary(max_size=4096), mutated()))
def test_streaming_reader_never_raises(data: bytes) -> None:
    for payload in (data, gzip.compress(data, mtime=0)):
        part = Part(Streamed(), 1)
        read_parts(BytesSource(payload), LIMITS, [part], time.monotonic() + 30)
        assert part.error is None


@FAST
@given(members, st.integers(1, 700), st.booleans())
def test_chunks_are_the_members_data(
    entries: list[tuple[str, bytes]], size: int, stop_early: bool
) -> None:
    stream = TarStream(io.BytesIO(_archive(entries, tarfile.PAX_FORMAT)), max_header_bytes=1 << 20)
    seen = []
    for entry in stream:
        pieces = []
        for piece in stream.chunks(size):
            assert 0 < len(piece) <= size
            pieces.append(piece)
            if stop_early:
                break  # the rest is skipped before the next entry
        seen.append((entry.name, b"".join(pieces)))
    assert seen == [(name, data[:size] if stop_early else data) for name, data in entries]


@pytest.mark.parametrize("pax_size", ["\u00b2", "\u0663", "-1", "", "1e3", "9" * 5000])
def test_odd_pax_sizes_are_contained(pax_size: str) -> None:
    # Regression: '\u00b2'.isdigit() is True but int('\u00b2') raises ValueError.
    assert_parser_contained(pax_file(pax_size))
    assert_reader_contained(pax_file(pax_size))


def test_entries_carry_mode_and_owner() -> None:
    """Scanners judge setuid and world-writable files, and executables, from these fields."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("usr/bin/su")
        info.mode, info.uid, info.gid, info.size = 0o4755, 0, 42, 3
        archive.addfile(info, io.BytesIO(b"elf"))
        plain = tarfile.TarInfo("etc/motd")
        plain.mode, plain.uid, plain.size = 0o666, 1000, 0
        archive.addfile(plain, io.BytesIO(b""))
    buffer.seek(0)
    entries = list(TarStream(buffer, max_header_bytes=4096))
    assert [(e.name, e.mode, e.uid, e.gid, e.executable) for e in entries] == [
        ("usr/bin/su", 0o4755, 0, 42, True),
        ("etc/motd", 0o666, 1000, 0, False),
    ]


# The parser's fast paths (issue 15: the reader's CPU per byte), each against the plain
# definition it replaces, on arbitrary input.

header_fields = st.one_of(
    st.binary(min_size=8, max_size=12),
    st.builds(lambda n, pad: (oct(n)[2:].encode() + pad)[:12], st.integers(0, 8**11), st.binary()),
    st.builds(lambda n: b"\x80" + n.to_bytes(11, "big"), st.integers(0, 2**88 - 1)),
)


ascii_blocks = st.binary(min_size=512, max_size=512).map(lambda b: bytes(x & 0x7F for x in b))
"""The one-call path of :func:`checksum` (random bytes are never all ASCII); all 0x7F is the
largest sum it takes."""


@FAST
@given(st.one_of(st.binary(min_size=512, max_size=512), ascii_blocks, st.just(b"\x7f" * 512)))
def test_checksum_is_the_posix_byte_sum(block: bytes) -> None:
    assert checksum(block) == sum(block[:148]) + 8 * ord(" ") + sum(block[156:])


@FAST
@given(st.lists(header_fields, min_size=5, max_size=5))
def test_numbers_fast_path_reads_as_number(fields: list[bytes]) -> None:
    block = bytearray(512)
    for (start, end), field in zip(FIELDS, fields, strict=True):
        block[start:end] = field[: end - start].ljust(end - start, b"\0")
    raw = bytes(block)
    expected = [_number(raw[s:e]) if _parses(raw[s:e]) else None for s, e in FIELDS]
    assert _or_none(lambda: _checksum_and_size(raw)) == _tuple_or_none(expected[:2])
    assert _or_none(lambda: _mode_uid_gid(raw)) == _tuple_or_none(expected[2:])


FIELDS = [(148, 156), (124, 136), (100, 108), (108, 116), (116, 124)]


def _parses(field: bytes) -> bool:
    try:
        _number(field)
    except TarError:
        return False
    return True


def _or_none(call: Callable[[], tuple[int, ...]]) -> tuple[int, ...] | None:
    try:
        return call()
    except TarError:
        return None


def _tuple_or_none(values: list[int | None]) -> tuple[int, ...] | None:
    return None if None in values else tuple(v for v in values if v is not None)


def _normalise_reference(name: str) -> tuple[str, str | None]:
    if name.startswith("/"):
        return name, "layer.absolute-path"
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return name, "layer.path-traversal"
    return "/".join(parts), None


paths = st.lists(st.sampled_from(["", ".", "..", "a", ".wh.x", "b.c", "..d", "é"]), max_size=6)


@FAST
@given(st.one_of(paths.map("/".join), names))
def test_normalise_fast_path_agrees_with_the_definition(name: str) -> None:
    assert normalise(name) == _normalise_reference(name)
