"""One-input fuzz targets: each feeds arbitrary bytes to a parser and lets through only the
errors that parser promises. Anything else escaping (or a hang, or runaway memory) is a bug.

Shared by ``fuzz/run.py`` (atheris, or hypothesis where atheris is missing) and by the
regression tests in ``tests/unit/proxy/test_fuzz_regressions.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import time
from collections.abc import Callable

import zstandard

from oci.errors import OCIError
from oci.manifests import MANIFEST_TYPES, parse_manifest
from proxy.names import check_digest, check_name, check_raw_path, check_reference
from verifiers.scan.limits import ScanLimits
from verifiers.scan.reader import read_tar
from verifiers.scan.tarstream import Entry, TarError, TarStream

# Small limits, so a fuzzer reaches every limit's code path with small inputs.
LIMITS = ScanLimits(
    max_layer_bytes=8 * 1024 * 1024,
    ratio_grace_bytes=64 * 1024,
    max_entries=1000,
    max_path_length=256,
    max_header_bytes=4096,
    max_file_bytes=64 * 1024,
    max_seconds=10,
)
CONTENT_TYPES = [None, "", "application/json", *sorted(MANIFEST_TYPES)]


class BytesSource:
    """A compressed layer held in memory, with the consumed count the reader's meter wants."""

    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)
        self._data = data
        self.consumed = 0

    def head(self, size: int) -> bytes:
        return self._data[:size]

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._io.read(size)
        self.consumed += len(chunk)
        return chunk

    def readinto(self, target: bytearray | memoryview) -> int:
        count = self._io.readinto(target)
        self.consumed += count
        return count


class AllFiles:
    """A visitor that wants every file, like the most curious scanner."""

    def wants(self, path: str, entry: Entry) -> bool:
        return True

    def visit(self, path: str, data: bytes) -> None:
        assert len(data) <= LIMITS.max_file_bytes


def manifest(data: bytes) -> None:
    """The manifest parser raises OCIError on anything it does not accept, nothing else."""
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)] if data else None
    try:
        record = parse_manifest("fuzz/repo", data[1:], content_type)
    except OCIError:
        return
    assert record.media_type in MANIFEST_TYPES
    assert record.size == len(data) - 1


def reference(data: bytes) -> None:
    """The name, reference, digest and raw-path checks raise only OCIError."""
    text = data.decode("utf-8", "surrogateescape")
    for check in (check_name, check_reference, check_digest, check_raw_path):
        with contextlib.suppress(OCIError):
            check(text)


def _layer_bytes(data: bytes) -> bytes:
    """First byte picks the wrapping: raw (any magic the bytes happen to have), gzip, zstd."""
    mode, rest = (data[0] % 3, data[1:]) if data else (0, b"")
    if mode == 1:
        return gzip.compress(rest, mtime=0)
    if mode == 2:
        return zstandard.ZstdCompressor().compress(rest)
    return rest


def layer(data: bytes) -> None:
    """The layer reader turns every problem into a finding; the tar parser raises TarError."""
    payload = _layer_bytes(data)
    report = read_tar(BytesSource(payload), LIMITS, AllFiles(), time.monotonic() + 30)
    assert report.entries <= LIMITS.max_entries + 1
    try:
        for _ in TarStream(io.BytesIO(payload), max_header_bytes=LIMITS.max_header_bytes):
            pass
    except TarError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "manifest": manifest,
    "reference": reference,
    "layer": layer,
}
