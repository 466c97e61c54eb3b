"""Files over a part's limit taken as a stream: the tar stream's chunk iterator, the shared
read feeding every streaming part from one read in bounded chunks, and what the sinks see when
a part fails or the layer is cut short."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from tests.fakes.layers import FakeBlobs
from tests.unit.verifiers.scan.conftest import files, tar_bytes
from verifiers.scan.limits import ScanLimits
from verifiers.scan.reader import STREAM_CHUNK, LayerReport, Part, read_layer_parts
from verifiers.scan.tarstream import Entry, TarStream, TarTruncated

BIG = os.urandom(3 * STREAM_CHUNK + 12345)
SMALL = b"small file\n"
LAYER = tar_bytes(files({"opt/big": BIG, "etc/small": SMALL}))


class Sink:
    """Keeps every chunk and whether it was closed."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.closed = 0
        self.fail_at = fail_at

    def feed(self, chunk: bytes) -> None:
        if len(self.chunks) == self.fail_at:
            raise RuntimeError("sink bug")
        self.chunks.append(chunk)

    def close(self) -> None:
        self.closed += 1


class Scanner:
    """Wants every file; takes whole what fits, streams the rest when ``streams``."""

    def __init__(self, streams: bool, fail_at: int | None = None) -> None:
        self.whole: dict[str, bytes] = {}
        self.sinks: dict[str, Sink] = {}
        self.too_large_paths: list[str] = []
        self.streams = streams
        self.fail_at = fail_at

    def wants(self, path: str, entry: Entry) -> bool:
        return True

    def visit(self, path: str, data: bytes) -> None:
        self.whole[path] = data

    def stream(self, path: str, entry: Entry) -> Sink | None:
        if not self.streams:
            return None
        self.sinks[path] = Sink(self.fail_at)
        return self.sinks[path]

    def too_large(self, path: str, entry: Entry, report: LayerReport) -> None:
        self.too_large_paths.append(path)


async def read(layer: bytes, parts: list[Part]) -> LayerReport:
    blobs = FakeBlobs()
    blobs.add("sha256:l", layer)
    report = await read_layer_parts(blobs, "sha256:l", ScanLimits(), parts)
    assert blobs.opened == ["sha256:l"]  # one read, whatever the parts
    return report


def tar_of(data: bytes) -> TarStream:
    return TarStream(io.BytesIO(data), max_header_bytes=1 << 20)


def test_chunks_give_the_entry_in_bounded_pieces_then_the_next_entry() -> None:
    stream = tar_of(LAYER)
    entries = iter(stream)
    assert next(entries).name == "opt/big"
    pieces = list(stream.chunks(100_000))
    assert max(map(len, pieces)) <= 100_000 and b"".join(pieces) == BIG
    small = next(entries)
    assert small.name == "etc/small" and stream.read(100) == SMALL


def test_chunks_left_midway_skip_the_rest_of_the_entry() -> None:
    stream = tar_of(LAYER)
    entries = iter(stream)
    next(entries)
    first = next(stream.chunks(4096))
    assert first == BIG[: len(first)]
    assert next(entries).name == "etc/small" and stream.read(100) == SMALL


def test_chunks_of_a_cut_entry_say_truncated() -> None:
    stream = tar_of(LAYER[: 512 * 3 + 5000])  # PAX header, ustar header, 5000 bytes of data
    next(iter(stream))
    with pytest.raises(TarTruncated):
        for _ in stream.chunks(1024):
            pass
    with pytest.raises(ValueError):
        next(tar_of(LAYER).chunks(0))


async def test_one_read_serves_whole_stream_and_too_large_parts() -> None:
    whole, streaming, neither = Scanner(False), Scanner(True), Scanner(False)
    parts = [Part(whole, 64 << 20), Part(streaming, 1024), Part(neither, 1024, neither.too_large)]
    report = await read(gzip.compress(LAYER), parts)
    assert report.problems == [] and all(p.error is None for p in parts)
    assert whole.whole == {"opt/big": BIG, "etc/small": SMALL}
    sink = streaming.sinks["opt/big"]
    assert b"".join(sink.chunks) == BIG and sink.closed == 1
    assert max(map(len, sink.chunks)) <= STREAM_CHUNK
    assert streaming.whole == {"etc/small": SMALL} and list(streaming.sinks) == ["opt/big"]
    assert neither.too_large_paths == ["opt/big"] and neither.whole == {"etc/small": SMALL}


async def test_a_file_nobody_holds_whole_goes_by_in_bounded_chunks() -> None:
    first, second = Scanner(True), Scanner(True)
    await read(LAYER, [Part(first, 1024), Part(second, 2048)])
    for scanner in (first, second):
        sink = scanner.sinks["opt/big"]
        assert len(sink.chunks) > 3 and max(map(len, sink.chunks)) <= STREAM_CHUNK
        assert b"".join(sink.chunks) == BIG and sink.closed == 1


async def test_a_failing_sink_retires_its_part_only() -> None:
    broken, fine = Scanner(True, fail_at=1), Scanner(True)
    parts = [Part(broken, 1024), Part(fine, 1024)]
    report = await read(LAYER, parts)
    assert isinstance(parts[0].error, RuntimeError) and parts[1].error is None
    assert broken.sinks["opt/big"].closed == 0 and broken.whole == {}  # dropped, not fed more
    assert b"".join(fine.sinks["opt/big"].chunks) == BIG and fine.whole == {"etc/small": SMALL}
    assert report.problems == []


async def test_a_layer_cut_inside_a_streamed_file_never_closes_its_sink() -> None:
    scanner = Scanner(True)
    report = await read(LAYER[: len(LAYER) // 2], [Part(scanner, 1024)])
    assert {p.rule_id for p in report.problems} == {"layer.truncated"}
    assert scanner.sinks["opt/big"].closed == 0


async def test_stream_given_on_the_part_wins_over_the_visitor() -> None:
    scanner, sink = Scanner(True), Sink()
    await read(LAYER, [Part(scanner, 1024, stream=lambda path, entry: sink)])
    assert scanner.sinks == {} and b"".join(sink.chunks) == BIG


def test_a_member_holding_a_tar_header_is_data_not_an_entry() -> None:
    """Streamed data is never parsed as headers, even when it looks like a tar itself."""
    inner = tar_bytes(files({"evil": b"x" * 600}))
    stream = tar_of(tar_bytes([(tarfile.TarInfo("outer.tar"), inner), *files({"b": b"y"})]))
    entries = iter(stream)
    next(entries)
    assert b"".join(stream.chunks(7)) == inner
    assert [e.name for e in entries] == ["b"]
