"""Go build info found in a stream: the same packages as the whole-file parser for real
binaries built by Debian's Go, fed in chunks of any size, a decoy magic (the string constant of
a program importing ``debug/buildinfo``) passed over, and executables over ``max_file_bytes``
inventoried through the shared read."""

from __future__ import annotations

import gzip
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.fakes.layers import FakeBlobs
from tests.support.ecosystems import build_go_binary, go_build, have_go
from tests.unit.verifiers.scan.conftest import tar_bytes
from verifiers.scan.ecosystems import golang
from verifiers.scan.ecosystems.golang_stream import MAX_WINDOW, BuildInfoSearch
from verifiers.scan.inventory import Collector, scan_layer
from verifiers.scan.limits import ScanLimits
from verifiers.scan.model import Package
from verifiers.scan.tarstream import Entry, Kind

needs_go = pytest.mark.skipif(not have_go(), reason="needs Debian's Go (golang-go)")

READER = """package main

import (
	"debug/buildinfo"
	"fmt"
	"os"
)

func main() {
	info, err := buildinfo.ReadFile(os.Args[0])
	fmt.Println(info, err)
}
"""
"""A program whose read-only data holds the build-info magic as a string constant."""


def build_reader(work: Path) -> Path:
    app = work / "reader"
    app.mkdir(parents=True)
    (app / "go.mod").write_text("module example.com/reader\n\ngo 1.19\n")
    (app / "main.go").write_text(READER)
    binary = work / "reader.bin"
    go_build(app, binary, work)
    return binary


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if not have_go():
        pytest.skip("needs Debian's Go (golang-go)")
    work = tmp_path_factory.mktemp("gostream")
    goroot = subprocess.run(
        ["go", "env", "GOROOT"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "app": build_go_binary(work / "app").read_bytes(),  # mod, dep, => lines
        "reader": build_reader(work).read_bytes(),  # the magic also in its rodata
        "gofmt": Path(goroot, "bin", "gofmt").read_bytes(),  # no module: cmd/gofmt
    }


def streamed(data: bytes, chunk: int, path: str = "bin/x") -> list[Package]:
    search = BuildInfoSearch()
    for at in range(0, len(data), chunk):
        search.feed(data[at : at + chunk])
    return search.packages(path)


def decoy_first(data: bytes) -> bytes:
    """``data`` with the program's own decoy (the magic in rodata and what follows it) also
    copied to an aligned offset before the real build info; the section table still leads the
    whole-file parser to the real one."""
    real = golang._section(data, b".go.buildinfo")
    decoy = data.find(golang.MAGIC, real + 1) if real is not None else -1
    assert real is not None and decoy > 0 and decoy % golang.ALIGN == 0
    copy = bytearray(data)
    at = 0x1000
    copy[at : at + 64] = data[decoy : decoy + 64]
    return bytes(copy)


@needs_go
@pytest.mark.parametrize("name", ["app", "reader", "gofmt"])
@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_streamed_build_info_equals_the_whole_file_parse(
    binaries: dict[str, bytes], name: str, chunk: int
) -> None:
    data = binaries[name]
    whole = golang.parse("bin/x", data)
    assert whole and whole[0].name == "stdlib"
    assert streamed(data, chunk) == whole


@needs_go
def test_byte_by_byte_around_the_build_info(binaries: dict[str, bytes]) -> None:
    """Chunks of one byte from a little before the magic to past the module list (the
    whole binary one byte at a time would take the test seconds, not the code)."""
    data = binaries["app"]
    start = golang._section(data, b".go.buildinfo")
    assert start is not None
    search = BuildInfoSearch()
    search.feed(data[: start - 5])
    for at in range(start - 5, start + 4096):
        search.feed(data[at : at + 1])
    search.feed(data[start + 4096 :])
    assert search.packages("bin/x") == golang.parse("bin/x", data)


@needs_go
@pytest.mark.parametrize("chunk", [7, 4096])
def test_a_decoy_magic_before_the_build_info_is_passed_over(
    binaries: dict[str, bytes], chunk: int
) -> None:
    data = decoy_first(binaries["reader"])
    assert data.find(golang.MAGIC) == 0x1000  # the decoy comes first now
    assert streamed(data, chunk) == golang.parse("bin/x", data) != []


def _elf(*pieces: bytes) -> bytes:
    """An ELF header without a section table, then each piece at the next 16-byte boundary."""
    out = b"\x7fELF\x02\x01\x01" + b"\0" * 57
    for piece in pieces:
        out += piece + b"\0" * (-len(piece) % 16)
    return out


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def _info(flag: int, version: bytes, modules: bytes) -> bytes:
    header = golang.MAGIC + bytes([8, flag]) + b"\0" * 16
    return header + _uvarint(len(version)) + version + _uvarint(len(modules)) + modules


MODULES = b"path\tx\nmod\texample.com/x\tv1.0.0\t\ndep\tgolang.org/x/text\tv0.3.7\th1:abc\n"
REAL = _info(2, b"go1.21.13", MODULES)
DECOYS = [
    golang.MAGIC + b"\0\0/proc/self/auxv\0" + b"\x01" * 32,  # the rodata constant: no flag
    _info(0, b"go1.21.13", MODULES),  # pre-1.18 pointer format
    _info(2, b"xx1.21.13", MODULES),  # not a toolchain version
    _info(2, b"go1.21.\xff", MODULES),  # not UTF-8
    _info(2, b"go" + b"1" * 1100, MODULES),  # an absurd toolchain
    golang.MAGIC + bytes([8, 2]) + b"\0" * 16 + b"\xff" * 11,  # length prefix that never ends
    golang.MAGIC + bytes([8, 2]) + b"\0" * 16 + b"\xff\xff\xff\x7fgo",  # 268 MB string
    b"\0" * 3 + REAL,  # the real thing off alignment
]


@pytest.mark.parametrize("chunk", [1, 7, 16, 4096])
def test_decoys_then_real_build_info(chunk: int) -> None:
    data = _elf(*DECOYS, REAL, _info(2, b"go1.1", b""))  # the first good one counts
    expected = [
        ("stdlib", "go1.21.13"),
        ("example.com/x", "v1.0.0"),
        ("golang.org/x/text", "v0.3.7"),
    ]
    assert [(p.name, p.version) for p in streamed(data, chunk)] == expected


@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_what_is_not_an_elf_file_is_not_searched(chunk: int) -> None:
    assert streamed(b"MZ" + _elf(REAL)[2:], chunk) == []
    assert streamed(b"\x7fEL", chunk) == []
    assert streamed(_elf(*DECOYS), chunk) == []


def test_a_decoy_announcing_a_long_module_list_holds_a_bounded_window() -> None:
    """A candidate whose module list would be 4 MiB but which the file ends before: what is
    kept stays bounded, and the real build info in the bytes it held is still found."""
    decoy = golang.MAGIC + bytes([8, 2]) + b"\0" * 16 + b"\x02go" + _uvarint(4 << 20)
    data = _elf(decoy, b"\x01" * 4096, REAL)
    search = BuildInfoSearch()
    for at in range(0, len(data), 512):
        search.feed(data[at : at + 512])
        assert len(search._buffer) <= MAX_WINDOW + 512
    assert search.found is None  # still waiting for the 4 MiB
    assert [p.version for p in search.packages("x")][:1] == ["go1.21.13"]


@needs_go
async def test_large_go_binary_is_inventoried_through_the_shared_read(
    binaries: dict[str, bytes],
) -> None:
    data = decoy_first(binaries["reader"])
    info = tarfile.TarInfo("usr/local/bin/reader")
    info.mode = 0o755
    blobs = FakeBlobs()
    blobs.add("sha256:l", gzip.compress(tar_bytes([(info, data)]), 1))
    whole = await scan_layer(blobs, "sha256:l", ScanLimits())
    small = ScanLimits(max_file_bytes=4096)
    streamed = await scan_layer(blobs, "sha256:l", small)
    assert streamed.problems == () and whole.problems == ()
    assert streamed.packages == whole.packages and len(whole.packages) == 2
    assert streamed.present == whole.present == ("usr/local/bin/reader",)
    # without a stream parser, a large executable is passed over (and not a problem)
    collector = Collector(max_file_bytes=4096, streaming={})
    assert not collector.wants(info.name, _entry(info.name, len(data)))


def _entry(name: str, size: int) -> Entry:
    return Entry(name=name, kind=Kind.FILE, size=size, link="", mode=0o755)


PLANTED = _info(2, b"go1.0.1", b"path\tevil\nmod\tevil.example/x\tv6.6.6\t\n")
"""Valid-looking build info, as an attacker (or a packer) could put anywhere in a binary."""


def planted_in_code(data: bytes) -> bytes:
    """``data`` with :data:`PLANTED` at an aligned offset in its code, before the real one."""
    segments = golang.writable_segments(data)
    assert segments and not golang.in_segments(0x1000, segments)  # code, not writable data
    copy = bytearray(data)
    copy[0x1000 : 0x1000 + len(PLANTED)] = PLANTED
    return bytes(copy)


@needs_go
@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_build_info_planted_outside_writable_data_is_passed_over(
    binaries: dict[str, bytes], chunk: int
) -> None:
    data = planted_in_code(binaries["app"])
    expected = golang.parse("bin/x", binaries["app"])
    assert golang.parse("bin/x", data) == expected  # the section table leads past it
    assert streamed(data, chunk) == expected  # the program headers do, in a stream


@needs_go
def test_without_a_section_table_only_writable_data_is_searched(
    binaries: dict[str, bytes],
) -> None:
    """A binary whose section table is gone (``sstrip``) is searched like Go's own reader does:
    writable data only."""
    data = bytearray(planted_in_code(binaries["app"]))
    data[0x3C:0x3E] = b"\0\0"  # e_shnum = 0
    assert not golang._has_sections(bytes(data))
    assert golang.parse("bin/x", bytes(data)) == golang.parse("bin/x", binaries["app"])


def _with_program_headers(offset: int, size: int, count: int, data: bytes) -> bytes:
    """``data`` (an ELF header from :func:`_elf`) claiming a program header table."""
    out = bytearray(data)
    out[0x20:0x28] = offset.to_bytes(8, "little")
    out[0x36:0x38] = size.to_bytes(2, "little")
    out[0x38:0x3A] = count.to_bytes(2, "little")
    return bytes(out)


@pytest.mark.parametrize(
    ("offset", "size", "count"),
    [(1 << 40, 56, 1), (64, 56, 65535), (64, 1, 1), (64, 56, 0)],
    ids=["table-past-the-end", "table-too-large-to-hold", "entries-too-small", "no-entries"],
)
def test_program_headers_that_cannot_be_read_restrict_nothing(
    offset: int, size: int, count: int
) -> None:
    data = _with_program_headers(offset, size, count, _elf(*DECOYS, REAL))
    assert golang.writable_segments(data) is None
    for chunk in (1, 4096):
        assert [p.version for p in streamed(data, chunk)][:1] == ["go1.21.13"]


def test_a_program_header_table_overlapping_the_elf_header_is_read_within_bounds() -> None:
    """A table claimed to start inside the 64-byte header reads its one entry, not past it
    (a 64-byte file raised ``struct.error`` when the loop ran to the 64th byte instead)."""
    data = _with_program_headers(1, 56, 1, _elf())
    assert len(data) == 64
    assert golang.writable_segments(data) == []  # readable; no writable segment
    assert streamed(data, 7) == [] and golang.parse("bin/x", data) == []
