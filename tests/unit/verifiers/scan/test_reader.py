"""The streaming layer reader: formats by magic, hostile tars as problems, limits in time."""

from __future__ import annotations

import gzip
import tarfile
import time
from collections.abc import Iterable, Iterator

import pytest
import zstandard

from tests.fakes.layers import FakeBlobs
from tests.support.tars import gzip_bomb, many_entries
from tests.unit.verifiers.scan.conftest import files, special, tar_bytes
from verifiers.scan.limits import ScanLimits
from verifiers.scan.reader import (
    UNREAD_HEADER,
    UNREAD_LONG_PATH,
    UNREAD_OUTSIDE,
    UNREAD_TYPE,
    UNREAD_WHITEOUT,
    LayerReport,
    read_layer,
)
from verifiers.scan.tarstream import Entry

METADATA = b"Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.2.3\n\nLong description\n"
LAYER = tar_bytes(files({"usr/lib/python3/site/demo_pkg-1.2.3.dist-info/METADATA": METADATA}))


class Wanted:
    """Visitor that wants every file ending in METADATA and keeps what it got."""

    def __init__(self) -> None:
        self.got: dict[str, bytes] = {}

    def wants(self, path: str, entry: Entry) -> bool:
        return path.endswith("METADATA")

    def visit(self, path: str, data: bytes) -> None:
        self.got[path] = data


async def read(data: bytes, limits: ScanLimits | None = None) -> tuple[LayerReport, Wanted]:
    blobs = FakeBlobs()
    blobs.add("sha256:l", data)
    visitor = Wanted()
    report = await read_layer(blobs, "sha256:l", limits or ScanLimits(), visitor)
    return report, visitor


def rules(report: LayerReport) -> set[str]:
    return {p.rule_id for p in report.problems}


@pytest.mark.parametrize(
    ("compress", "fmt"),
    [
        (lambda d: gzip.compress(d), "gzip"),
        (lambda d: zstandard.ZstdCompressor().compress(d), "zstd"),
        (lambda d: d, "tar"),
    ],
)
async def test_formats_by_magic(compress, fmt) -> None:
    report, visitor = await read(compress(LAYER))
    assert report.format == fmt and report.problems == []
    assert report.unread == {} and report.stopped == ""
    assert visitor.got == {"usr/lib/python3/site/demo_pkg-1.2.3.dist-info/METADATA": METADATA}


async def test_long_names_and_dot_slash_prefixes() -> None:
    deep = "./" + "/".join(["d" * 60] * 5) + "/x.dist-info/METADATA"
    report, visitor = await read(gzip.compress(tar_bytes(files({deep: METADATA}))))
    assert report.problems == [] and list(visitor.got) == [deep[2:]]


async def test_truncated_gzip_is_a_finding() -> None:
    data = gzip.compress(LAYER + tar_bytes(files({"big": bytes(range(256)) * 4000})))
    report, _ = await read(data[: len(data) // 2])
    assert rules(report) == {"layer.truncated"} and report.stopped == "layer.truncated"


async def test_garbage_is_corrupt_not_a_crash() -> None:
    report, _ = await read(b"\x1f\x8b" + b"not really gzip" * 100)
    assert rules(report) == {"layer.corrupt"}
    report, _ = await read(b"x" * 5000)
    assert rules(report) == {"layer.corrupt"}


class Counted:
    """Chunks of a stream, counting how many the reader pulled: a read stopped by a limit
    must not have gone through the rest (what makes it fast, measured by work rather than by
    a wall clock on a shared machine; ``bench/scan_bench.py`` measures the speed)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.pulled = 0
        self.exhausted = False

    def __call__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk
        self.exhausted = True


async def test_gzip_bomb_is_stopped_early() -> None:
    blobs = FakeBlobs()
    stream = Counted(gzip_bomb(16))
    blobs.add_stream("sha256:bomb", stream)
    limits = ScanLimits()
    report = await read_layer(blobs, "sha256:bomb", limits, Wanted())
    assert rules(report) == {"layer.compression-bomb"}
    assert report.stopped == "layer.compression-bomb"
    # Stopped once the ratio was judged (after the grace bytes), not at the 16 GiB end.
    assert not stream.exhausted
    assert report.decompressed_bytes < limits.ratio_grace_bytes + 2 * 64 * 1024**2
    assert report.decompressed_bytes < 128 * 1024**2


async def test_size_limit() -> None:
    report, _ = await read(gzip.compress(LAYER), ScanLimits(max_layer_bytes=1024))
    assert rules(report) == {"layer.too-large"}


async def test_traversal_absolute_device_and_hardlinks() -> None:
    members = [
        (tarfile.TarInfo("../../etc/passwd"), b"root::0:0::/:/bin/sh\n"),
        (tarfile.TarInfo("/etc/shadow"), b"x"),
        (tarfile.TarInfo("ok/file"), b"fine"),
        special("dev/sda", tarfile.BLKTYPE),
        special("dev/null", tarfile.CHRTYPE),
        special("ok/inside", tarfile.LNKTYPE, "ok/file"),
        special("ok/missing", tarfile.LNKTYPE, "not/in/this/layer"),
        special("ok/escape", tarfile.LNKTYPE, "../../etc/shadow"),
        special("ok/symlink", tarfile.SYMTYPE, "/etc/passwd"),
    ]
    report, _ = await read(gzip.compress(tar_bytes(members)))
    by_rule: dict[str, list[str]] = {}
    for problem in report.problems:
        by_rule.setdefault(problem.rule_id, []).append(problem.path)
    assert by_rule == {
        "layer.path-traversal": ["../../etc/passwd"],
        "layer.absolute-path": ["/etc/shadow"],
        "layer.device-file": ["dev/sda", "dev/null"],
        "layer.hardlink-outside": ["ok/missing", "ok/escape"],
    }
    assert report.unread == {UNREAD_OUTSIDE: 2}  # devices and links hold no data


async def test_path_and_header_limits() -> None:
    long_name = "a/" * 3000 + "f"
    report, _ = await read(tar_bytes(files({long_name: b"x", "fine": b"y"})))
    assert rules(report) == {"layer.path-too-long"}
    assert report.unread == {UNREAD_LONG_PATH: 1}
    report, _ = await read(
        tar_bytes(files({long_name: b"x", "fine": b"y"})), ScanLimits(max_header_bytes=1024)
    )
    assert rules(report) == {"layer.oversized-header"}
    assert report.unread == {UNREAD_HEADER: 1}


async def test_every_unread_entry_is_counted_past_the_recorded_problems() -> None:
    members = [(tarfile.TarInfo("a/" * 2100 + f"{n}"), b"k") for n in range(8)]
    report, _ = await read(tar_bytes(members))
    assert report.unread == {UNREAD_LONG_PATH: 8}
    assert sum(p.count for p in report.problems) == 8 and len(report.problems) == 6


async def test_whiteouts_and_unknown_entry_types_holding_data_are_unread() -> None:
    strange = tarfile.TarInfo("opt/volume")
    strange.type = b"V"  # GNU volume header: not a file to the reader, a file to ``tar -x``
    members = [
        (tarfile.TarInfo("etc/.wh.passwd"), b""),  # a plain whiteout: nothing to read
        (tarfile.TarInfo("etc/.wh.shadow"), b"AKIA data a runtime never shows"),
        (strange, b"data"),
    ]
    report, _ = await read(tar_bytes(members))
    assert report.unread == {UNREAD_WHITEOUT: 1, UNREAD_TYPE: 1}
    assert report.whiteouts == ["etc/passwd", "etc/shadow"]


async def test_oversized_headers_before_a_fatal_problem_are_still_counted() -> None:
    layer = tar_bytes(files({"a/" * 3000 + "f": b"x", "big": bytes(range(256)) * 4000}))
    report, _ = await read(layer[: len(layer) // 2], ScanLimits(max_header_bytes=1024))
    assert rules(report) == {"layer.oversized-header", "layer.truncated"}
    assert report.unread == {UNREAD_HEADER: 1} and report.stopped == "layer.truncated"


async def test_wanted_file_over_the_memory_limit_is_skipped_and_recorded() -> None:
    report, visitor = await read(gzip.compress(LAYER), ScanLimits(max_file_bytes=10))
    assert visitor.got == {} and rules(report) == {"layer.file-too-large"}


async def test_a_million_tiny_entries_hit_the_entry_limit() -> None:
    blobs = FakeBlobs()
    stream = Counted(many_entries(1_000_000))
    blobs.add_stream("sha256:many", stream)
    limits = ScanLimits(max_compression_ratio=1e9)  # only the entry limit may stop it
    report = await read_layer(blobs, "sha256:many", limits, Wanted())
    assert rules(report) == {"layer.too-many-entries"}
    assert report.entries == limits.max_entries + 1
    assert not stream.exhausted  # the second half of the layer was never read


async def test_many_problems_are_one_count_not_a_million_findings() -> None:
    members = [(tarfile.TarInfo(f"../x{n}"), b"") for n in range(50)]
    report, _ = await read(tar_bytes(members))
    assert len(report.problems) == 6
    assert report.problems[-1].count == 45


async def test_time_limit() -> None:
    def slow() -> Iterator[bytes]:
        yield LAYER[:512]
        time.sleep(0.5)
        yield LAYER[512:]

    blobs = FakeBlobs()
    blobs.add_stream("sha256:slow", slow)
    report = await read_layer(blobs, "sha256:slow", ScanLimits(max_seconds=0.2), Wanted())
    assert rules(report) == {"layer.timeout"}
