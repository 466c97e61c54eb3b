"""Skipping unwanted file data without copying it (``Meter.skip``) and the octal fast path of
tar headers: the same entries, the same errors and the same limits as the plain reading."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time

import pytest

from fuzz.targets import BytesSource
from verifiers.scan.decompress import REFILL, LimitExceeded, Meter, open_decompressed
from verifiers.scan.limits import ScanLimits
from verifiers.scan.tarstream import TarError, TarStream, TarTruncated, _number


def meter(data: bytes, limits: ScanLimits | None = None) -> Meter:
    source = BytesSource(data)
    _, inner = open_decompressed(source)
    return Meter(inner, source, limits or ScanLimits(), time.monotonic() + 60)


def layer(sizes: list[int]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for n, size in enumerate(sizes):
            info = tarfile.TarInfo(f"dir/file{n}")
            info.size, info.mode, info.uid = size, 0o4755, 1000 + n
            tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


def test_skip_discards_exactly_across_refills_and_stops_at_the_end() -> None:
    data = os.urandom(3 * REFILL + 123)
    stream = meter(gzip.compress(data))
    assert stream.read(10) == data[:10]
    assert stream.skip(2 * REFILL) == 2 * REFILL
    assert stream.read(5) == data[10 + 2 * REFILL : 15 + 2 * REFILL]
    rest = len(data) - 15 - 2 * REFILL
    assert stream.skip(rest + 1000) == rest, "fewer only at the end"
    assert stream.read(10) == b""
    assert stream.total == len(data)


def test_skipping_a_bomb_is_stopped_by_the_ratio_limit() -> None:
    bomb = gzip.compress(bytes(64 << 20))
    limits = ScanLimits(ratio_grace_bytes=1 << 20, max_compression_ratio=10)
    stream = meter(bomb, limits)
    with pytest.raises(LimitExceeded) as caught:
        stream.skip(64 << 20)
    assert caught.value.rule_id == "layer.compression-bomb"


def test_entries_are_the_same_whether_data_is_skipped_or_read() -> None:
    tar = layer([0, 1, 511, 512, 513, REFILL + 7, 3 * REFILL])
    skipped = list(TarStream(meter(gzip.compress(tar)), max_header_bytes=1 << 20))
    plain = list(TarStream(io.BytesIO(tar), max_header_bytes=1 << 20))  # no ``skip``: reads
    assert skipped == plain
    assert [(e.size, e.mode, e.uid) for e in skipped][-1] == (3 * REFILL, 0o4755, 1006)


def test_a_tar_cut_inside_skipped_data_is_truncated() -> None:
    tar = layer([4 * REFILL])
    cut = tar[: 2 * REFILL]
    with pytest.raises(TarTruncated):
        list(TarStream(meter(cut), max_header_bytes=1 << 20))  # plain tar: no decompressor


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"0000644\0", 0o644),
        (b" 644 \0\0\0", 0o644),
        (b"\0" * 8, 0),
        (b"        ", 0),
        (b"12\0junk!", 0o12),
        (b"\x80" + (5).to_bytes(7, "big"), 5),
    ],
)
def test_header_numbers(field: bytes, value: int) -> None:
    assert _number(field) == value


def test_header_number_that_is_not_octal_is_an_error() -> None:
    with pytest.raises(TarError):
        _number(b"00009x\0\0")
