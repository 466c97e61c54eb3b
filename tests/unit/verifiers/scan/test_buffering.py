"""Where the bytes break: the tar stream's own buffer (a header or a file cut by the end of a
read, data skipped past the buffer's end), gzip layers of several members, and the async
bridge's ``readinto`` over chunks of any size. Each reading must give the very entries and data
of reading the archive in one piece."""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
import os
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.targets import BytesSource
from tests.fakes.layers import FakeBlobs
from tests.unit.verifiers.scan.conftest import files, tar_bytes
from verifiers.scan import decompress
from verifiers.scan.bridge import BATCH
from verifiers.scan.decompress import Meter, Readable, open_decompressed
from verifiers.scan.limits import ScanLimits
from verifiers.scan.reader import read_layer, read_tar
from verifiers.scan.tarstream import BLOCK, FILL, Entry, TarStream, TarTruncated

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
LIMITS = ScanLimits()


class Pieces:
    """A plain tar read back in pieces of the given sizes, in turn (a header or a file is cut
    wherever a piece ends); with ``skips``, it also has a source's ``skip``, as ``Meter``."""

    def __init__(self, data: bytes, sizes: list[int], *, skips: bool = False) -> None:
        self._io = io.BytesIO(data)
        self._sizes = sizes
        self._turn = 0
        self.skipped = 0
        if skips:
            self.skip = self._skip

    def read(self, size: int = -1, /) -> bytes:
        piece = self._sizes[self._turn % len(self._sizes)]
        self._turn += 1
        return self._io.read(piece if size < 0 else min(size, piece))

    def _skip(self, size: int, /) -> int:
        data = self._io.read(size)
        self.skipped += len(data)
        return len(data)


class Everything:
    """Wants every file, keeps what it was given."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def wants(self, path: str, entry: Entry) -> bool:
        return True

    def visit(self, path: str, data: bytes) -> None:
        self.files[path] = data


def read_some(stream: TarStream, chunk: int) -> list[tuple[str, int, bytes | None]]:
    """Every entry; every third file read whole, every third in chunks, the rest skipped."""
    seen: list[tuple[str, int, bytes | None]] = []
    for n, entry in enumerate(stream):
        data: bytes | None = None
        if n % 3 == 0:
            data = stream.read(1 << 30)
        elif n % 3 == 1:
            data = b"".join(stream.chunks(chunk))
        seen.append((entry.name, entry.size, data))
    return seen


SIZES = [0, 1, BLOCK - 1, BLOCK, FILL - 2 * BLOCK, FILL - BLOCK, FILL, FILL + 1, 2 * FILL + 513]
CONTENT = {f"dir/file{n}": os.urandom(size) for n, size in enumerate(SIZES)}
LAYER = tar_bytes(files(CONTENT))
EXPECTED = [
    (name, len(data), None if n % 3 == 2 else data)
    for n, (name, data) in enumerate(CONTENT.items())
]


def meter(data: bytes) -> Meter:
    source = BytesSource(data)
    _, inner = open_decompressed(source)
    return Meter(inner, source, LIMITS, time.monotonic() + 60)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda: Pieces(LAYER, [1, 100, 511, 513, 4097]), id="odd-pieces"),
        pytest.param(lambda: Pieces(LAYER, [FILL + 3, 7], skips=True), id="odd-pieces-skip"),
        pytest.param(lambda: Pieces(LAYER, [BLOCK + 1], skips=True), id="header-cut-each-read"),
        pytest.param(lambda: meter(gzip.compress(LAYER)), id="gzip-meter"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 1000, FILL, 1 << 20])
def test_entries_and_data_do_not_depend_on_where_reads_end(
    source: Callable[[], Readable], chunk: int
) -> None:
    seen = read_some(TarStream(source(), max_header_bytes=1 << 20), chunk)
    assert seen == EXPECTED


def test_data_past_the_buffer_is_skipped_by_the_source_not_read_out() -> None:
    source = Pieces(LAYER, [FILL], skips=True)
    assert [entry.size for entry in TarStream(source, max_header_bytes=1 << 20)] == SIZES
    # the buffer holds at most FILL bytes: the rest of the largest file is never read out
    assert source.skipped >= SIZES[-1] - FILL


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3000)), min_size=1, max_size=6),
    st.lists(st.integers(1, 1500), min_size=1, max_size=5),
    st.booleans(),
    st.integers(1, 2000),
)
def test_any_read_sizes_give_the_same_entries(
    members: list[tuple[int, int]], sizes: list[int], skips: bool, chunk: int
) -> None:
    layer = tar_bytes(
        files(
            {f"f{n}/" + "x" * length: os.urandom(size) for n, (length, size) in enumerate(members)}
        )
    )
    plain = read_some(TarStream(io.BytesIO(layer), max_header_bytes=1 << 20), chunk)
    cut = read_some(TarStream(Pieces(layer, sizes, skips=skips), max_header_bytes=1 << 20), chunk)
    assert cut == plain


@FAST
@given(st.integers(0, len(LAYER)), st.lists(st.integers(1, 1500), min_size=1, max_size=4))
def test_a_cut_anywhere_is_truncated_or_an_end_whatever_the_read_sizes(
    at: int, sizes: list[int]
) -> None:
    outcomes: list[object] = []
    for source in (io.BytesIO(LAYER[:at]), Pieces(LAYER[:at], sizes, skips=True)):
        stream = TarStream(source, max_header_bytes=1 << 20)
        try:
            outcomes.append(read_some(stream, 1000))
        except TarTruncated:  # the message says where: in a header or in skipped data
            outcomes.append("truncated")
    assert outcomes[0] == outcomes[1]


def members_of(data: bytes, cuts: list[int]) -> bytes:
    """``data`` gzip-compressed as several members, one per piece between the cuts."""
    bounds = [0, *sorted(cuts), len(data)]
    return b"".join(gzip.compress(data[a:b], mtime=0) for a, b in itertools.pairwise(bounds))


READERS: dict[str, Callable[[io.BytesIO], Readable]] = {
    "isal": decompress._gzip_reader,
    "zlib-ng": decompress._zlib_ng_reader,
    "zlib": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
}


@pytest.mark.parametrize("reader", READERS)
def test_a_layer_of_several_gzip_members_reads_as_one(reader: str) -> None:
    # a member ends inside a header, inside a file's data, and on a block boundary
    layer = members_of(LAYER, [700, FILL + 5000, 2 * FILL + 3 * BLOCK])
    stream = TarStream(READERS[reader](io.BytesIO(layer)), max_header_bytes=1 << 20)
    assert read_some(stream, 4096) == EXPECTED


def test_the_reader_reads_every_member_and_sees_a_cut_in_the_last() -> None:
    layer = members_of(LAYER, [700, FILL + 5000])
    visitor = Everything()
    report = read_tar(BytesSource(layer), LIMITS, visitor, time.monotonic() + 60)
    assert report.problems == [] and report.decompressed_bytes == len(LAYER)
    assert visitor.files == CONTENT

    cut = read_tar(BytesSource(layer[:-100]), LIMITS, Everything(), time.monotonic() + 60)
    assert cut.stopped == "layer.truncated"


def chunked(data: bytes, sizes: list[int]) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        at, turn = 0, 0
        while at < len(data):
            size = sizes[turn % len(sizes)]
            yield data[at : at + size]
            at, turn = at + size, turn + 1

    return chunks


@pytest.mark.parametrize("sizes", [[1, 7, 1000], [70_000], [3, 600_000]])
async def test_the_bridge_feeds_the_gzip_reader_across_chunks_of_any_size(sizes: list[int]) -> None:
    blobs = FakeBlobs()
    blobs.add_stream("sha256:layer", chunked(members_of(LAYER, [FILL]), sizes))
    visitor = Everything()
    report = await read_layer(blobs, "sha256:layer", LIMITS, visitor)
    assert report.problems == [] and report.format == "gzip"
    assert visitor.files == CONTENT


async def test_the_bridge_fetches_small_chunks_in_batches_of_about_a_mib() -> None:
    layer = gzip.compress(LAYER, compresslevel=0)  # about as large as the tar: several MiB
    tasks: set[object] = set()  # each hop from the reader's thread runs in a task of its own

    def chunks() -> Iterator[bytes]:
        for at in range(0, len(layer), 4096):
            tasks.add(asyncio.current_task())
            yield layer[at : at + 4096]

    blobs = FakeBlobs()
    blobs.add_stream("sha256:layer", chunks)
    visitor = Everything()
    report = await read_layer(blobs, "sha256:layer", LIMITS, visitor)
    assert report.problems == [] and visitor.files == CONTENT
    assert BATCH >= 1 << 20
    assert len(tasks) <= len(layer) // (1 << 20) + 2, (
        f"{len(tasks)} hops, {len(layer) // 4096} chunks"
    )
