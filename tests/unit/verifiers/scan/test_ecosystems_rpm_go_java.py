"""The RPM, Go and Java parsers on real files (an rpmdb written by Debian's rpm, a binary built
by Debian's Go, Debian's Maven jars) checked against the tools' own readers, and on hostile
bytes (truncated headers, offsets out of bounds, zip bombs, fake build info): never a crash."""

from __future__ import annotations

import io
import random
import sqlite3
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support.ecosystems import (
    JAVA,
    build_go_binary,
    build_rpmdb,
    build_war,
    have_go,
    have_rpm,
    java_archives,
)
from verifiers.scan.ecosystems import golang, java, rpm
from verifiers.scan.inventory import Collector, purl
from verifiers.scan.model import OsRelease, Package
from verifiers.scan.tarstream import Entry, Kind
from verifiers.vulns.ecosystems import inventory_ecosystem, query_for
from verifiers.vulns.match import is_affected
from verifiers.vulns.osv import Advisory

needs_rpm = pytest.mark.skipif(not have_rpm(), reason="needs Debian's rpm and rpmbuild")
needs_go = pytest.mark.skipif(not have_go(), reason="needs Debian's Go (golang-go)")
needs_jars = pytest.mark.skipif(
    not java_archives(), reason="needs jars of Debian Java library packages"
)
RPMDB = "var/lib/rpm/rpmdb.sqlite"


@pytest.fixture(scope="module")
def rpmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rpmdb(tmp_path_factory.mktemp("rpm"))


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_binary(tmp_path_factory.mktemp("go"))


# --- RPM -------------------------------------------------------------------------------------


@needs_rpm
def test_rpmdb_matches_rpm_query(rpmdb: Path) -> None:
    query = "%{NAME}|%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}|%{ARCH}|%{SOURCERPM}\n"
    out = subprocess.run(
        ["rpm", "--dbpath", str(rpmdb.parent), "-qa", "--qf", query],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = {tuple(line.split("|")) for line in out.splitlines()}
    found = rpm.parse(RPMDB, rpmdb.read_bytes())
    assert len(expected) == 2
    assert {
        (p.name, p.version, p.arch, f"{p.source_name}-{p.source_version}.src.rpm") for p in found
    } == expected
    assert rpm.matches("usr/lib/sysimage/rpm/rpmdb.sqlite") and not rpm.matches("var/lib/rpm/x")


def _blobs(database: bytes) -> list[bytes]:
    conn = sqlite3.connect(":memory:")
    image = bytearray(database)
    image[18:20] = b"\x01\x01"
    conn.deserialize(bytes(image))
    return [row[0] for row in conn.execute("SELECT blob FROM Packages ORDER BY hnum")]


@needs_rpm
def test_truncated_rpm_headers_are_errors_not_crashes(rpmdb: Path) -> None:
    blob = _blobs(rpmdb.read_bytes())[0]
    assert rpm.parse_header(blob).name
    for cut in range(0, len(blob), 7):
        try:
            rpm.parse_header(blob[:cut])
        except rpm.HeaderError:
            continue


@needs_rpm
def test_index_entries_pointing_outside_the_data_are_rejected(rpmdb: Path) -> None:
    blob = bytearray(_blobs(rpmdb.read_bytes())[0])
    count = struct.unpack_from(">i", blob)[0]
    for index in range(count):
        tag = struct.unpack_from(">i", blob, 8 + 16 * index)[0]
        if tag == 1000:  # NAME
            struct.pack_into(">i", blob, 8 + 16 * index + 8, 0x7FFFFFF0)
    with pytest.raises(rpm.HeaderError):
        rpm.parse_header(bytes(blob))
    struct.pack_into(">ii", blob, 0, 0x7FFFFFFF, 16)
    with pytest.raises(rpm.HeaderError):
        rpm.parse_header(bytes(blob))


@needs_rpm
def test_one_bad_header_skips_one_package(rpmdb: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rpmdb.sqlite"
    copy.write_bytes(rpmdb.read_bytes())
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE Packages SET blob = substr(blob, 1, 40) WHERE hnum = 1")
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")  # checkpoints the WAL into the file
    conn.close()
    found = rpm.parse(RPMDB, copy.read_bytes())
    assert len(found) == 1


@needs_rpm
def test_garbage_and_truncated_databases_give_nothing(rpmdb: Path) -> None:
    data = rpmdb.read_bytes()
    assert rpm.parse(RPMDB, b"not a database") == []
    assert rpm.parse(RPMDB, b"SQLite format 3\0" + b"\xff" * 4096) == []
    for cut in (100, 1024, 4096, len(data) // 2):
        assert isinstance(rpm.parse(RPMDB, data[:cut]), list)


def test_rpm_purl_follows_syft_and_osv_ecosystem_follows_the_distro() -> None:
    package = Package(
        "rpm", "openssl", "1:3.0.7-24.el9", RPMDB, "", "openssl", "3.0.7-24.el9", "x86_64"
    )
    rocky = OsRelease(id="rocky", version_id="9.3")
    assert purl(package, rocky) == (
        "pkg:rpm/rocky/openssl@3.0.7-24.el9?arch=x86_64&distro=rocky-9.3&epoch=1"
        "&upstream=openssl-3.0.7-24.el9.src.rpm"
    )
    query = query_for(package, rocky)
    assert query is not None and (query.ecosystem, query.name) == ("Rocky Linux:9", "openssl")
    alma = query_for(package, OsRelease(id="almalinux", version_id="9.2"))
    assert alma is not None and alma.ecosystem == "AlmaLinux:9"
    assert query_for(package, OsRelease(id="rhel", version_id="9.3")) is None
    assert query_for(package, OsRelease(id="fedora", version_id="39")) is None
    assert inventory_ecosystem("Rocky Linux:9") == "rpm"


def test_rpm_ranges_use_rpm_version_order() -> None:
    advisory = Advisory.from_json(
        {
            "id": "RLSA-TEST",
            "affected": [
                {
                    "package": {"ecosystem": "Rocky Linux:9", "name": "openssl"},
                    "ranges": [
                        {
                            "type": "ECOSYSTEM",
                            "events": [{"introduced": "0"}, {"fixed": "1:3.0.7-25.el9"}],
                        }
                    ],
                }
            ],
        }
    )
    (entry,) = advisory.affected
    assert is_affected(entry, "1:3.0.7-24.el9")
    assert is_affected(entry, "1:3.0.7-9.el9")  # rpmvercmp: 9 < 25 numerically
    assert not is_affected(entry, "1:3.0.7-25.el9")
    assert not is_affected(entry, "2:1.0-1.el9")  # a higher epoch wins


# --- Go --------------------------------------------------------------------------------------


def _go_version_m(binary: Path) -> tuple[str, set[tuple[str, str]]]:
    """``go version -m``'s view: the toolchain and (module, version), replacements applied."""
    out = subprocess.run(
        ["go", "version", "-m", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    toolchain = lines[0].split(": ", 1)[1].strip()
    modules: list[tuple[str, str]] = []
    main = ""
    for line in lines[1:]:
        fields = line.strip().split("\t")
        if fields[0] == "path":
            main = fields[1]
        elif fields[0] in ("mod", "dep"):
            modules.append((fields[1], fields[2]))
        elif fields[0] == "=>":
            modules[-1] = (fields[1], fields[2])
    if not any(line.strip().startswith("mod\t") for line in lines):
        modules.append((main, "(devel)"))  # a program of the Go distribution: no module
    return toolchain, set(modules)


@needs_go
def test_go_binary_build_info_matches_go_version_m(go_binary: Path) -> None:
    toolchain, modules = _go_version_m(go_binary)
    found = golang.parse("usr/local/bin/app", go_binary.read_bytes())
    assert found[0] == Package("golang", "stdlib", toolchain, "usr/local/bin/app")
    assert {(p.name, p.version) for p in found[1:]} == modules
    assert ("../greet", "(devel)") in modules  # the replaced dependency, as syft reports it
    assert purl(found[0], None) == f"pkg:golang/stdlib@{toolchain.removeprefix('go')}"


@needs_go
def test_go_distribution_programs_are_named_by_their_package_path() -> None:
    goroot = subprocess.run(
        ["go", "env", "GOROOT"], capture_output=True, text=True, check=True
    ).stdout.strip()
    gofmt = Path(goroot, "bin", "gofmt")
    toolchain, modules = _go_version_m(gofmt)
    found = golang.parse("usr/local/go/bin/gofmt", gofmt.read_bytes())
    assert {(p.name, p.version) for p in found} == {("stdlib", toolchain), *modules}
    assert ("cmd/gofmt", "(devel)") in modules


def _entry(mode: int, size: int) -> Entry:
    return Entry(name="usr/bin/x", kind=Kind.FILE, size=size, link="", mode=mode)


def test_only_executables_of_plausible_size_are_read() -> None:
    collector = Collector(max_file_bytes=10_000_000)
    assert collector.wants("usr/bin/x", _entry(0o755, 2_000_000))
    assert not collector.wants("usr/bin/x", _entry(0o644, 2_000_000))
    assert not collector.wants("usr/bin/x", _entry(0o755, 100))  # a stub or script
    assert collector.wants("usr/bin/x", _entry(0o755, 20_000_000))  # over the limit: streamed
    streamless = Collector(max_file_bytes=10_000_000, streaming={})
    assert not streamless.wants("usr/bin/x", _entry(0o755, 20_000_000))  # else passed over


@needs_go
def test_collector_routes_a_chosen_executable_to_the_go_parser(go_binary: Path) -> None:
    collector = Collector()
    data = go_binary.read_bytes()
    assert collector.wants("app", _entry(0o755, len(data)))
    collector.visit("app", data)
    assert collector.packages[0].name == "stdlib"
    script = b"#!/bin/sh\n" * 200
    assert collector.wants("run.sh", _entry(0o755, len(script)))
    collector.visit("run.sh", script)  # not ELF: nothing, no error
    assert len({p.path for p in collector.packages}) == 1


def _fake_elf(payload: bytes) -> bytes:
    """An ELF header with no section table followed by ``payload`` at a 16-byte boundary."""
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 57
    return header + payload


@pytest.mark.parametrize(
    "payload",
    [
        golang.MAGIC,  # truncated header
        golang.MAGIC + b"\x08\x02" + b"\0" * 16 + b"\xff" * 12,  # varint that never ends
        golang.MAGIC + b"\x08\x02" + b"\0" * 16 + b"\xff\xff\xff\x7f" + b"go1",  # 268 MB string
        golang.MAGIC + b"\x08\x02" + b"\0" * 16 + b"\x08go1.21.0",  # module string missing
        golang.MAGIC + b"\x08\x00" + b"\0" * 16 + b"\0" * 32,  # pre-1.18 pointer format
        b"\0" * 15 + golang.MAGIC + b"\x08\x02" + b"\0" * 16,  # magic off alignment
    ],
)
def test_fake_build_info_gives_nothing(payload: bytes) -> None:
    assert golang.parse("bin/x", _fake_elf(payload)) == []


def test_inline_build_info_without_a_section_table_is_read() -> None:
    modules = "path\tx\nmod\texample.com/x\tv1.0.0\t\ndep\tgolang.org/x/text\tv0.3.7\th1:abc\n"
    payload = golang.MAGIC + b"\x08\x02" + b"\0" * 16
    payload += bytes([9]) + b"go1.21.13" + bytes([len(modules)]) + modules.encode()
    found = golang.parse("bin/x", _fake_elf(payload))
    assert [(p.name, p.version) for p in found] == [
        ("stdlib", "go1.21.13"),
        ("example.com/x", "v1.0.0"),
        ("golang.org/x/text", "v0.3.7"),
    ]
    query = query_for(found[2], None)
    assert query is not None and (query.ecosystem, query.name) == ("Go", "golang.org/x/text")
    assert purl(found[2], None) == "pkg:golang/golang.org/x/text@v0.3.7"


@needs_go
def test_truncated_and_corrupted_go_binaries_do_not_crash(go_binary: Path) -> None:
    data = go_binary.read_bytes()
    for cut in range(0, len(data), len(data) // 50):
        assert isinstance(golang.parse("bin/x", data[:cut]), list)
    damaged = bytearray(data)
    damaged[0x28:0x30] = b"\xff" * 8  # section table offset far past the end
    assert isinstance(golang.parse("bin/x", bytes(damaged)), list)
    assert golang.parse("bin/x", b"MZ" + data[2:]) == []  # not ELF: not parsed at all


# --- Java ------------------------------------------------------------------------------------


def _poms_by_unzip(jar: Path) -> set[tuple[str, str]]:
    """(group:artifact, version) of every pom.properties, as ``unzip`` extracts them."""
    names = subprocess.run(["unzip", "-Z1", str(jar)], capture_output=True, text=True).stdout
    found = set()
    for name in names.splitlines():
        if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
            text = subprocess.run(
                ["unzip", "-p", str(jar), name], capture_output=True, text=True
            ).stdout
            fields = dict(
                line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
            )
            found.add((f"{fields['groupId']}:{fields['artifactId']}", fields["version"].strip()))
    return found


@needs_jars
def test_every_pom_properties_of_debian_jars_is_a_package() -> None:
    with_poms = 0
    for jar in java_archives():
        expected = _poms_by_unzip(jar.resolve())
        found = java.parse(f"opt/lib/{jar.name}", jar.read_bytes())
        listed = {(p.name, p.version) for p in found}
        if expected:
            with_poms += 1
            assert expected <= listed, jar
        assert len(listed - expected) <= 1  # at most the archive itself, named by its manifest
        assert all(p.ecosystem == "maven" and p.path == f"opt/lib/{jar.name}" for p in found)
    assert with_poms > 10


@needs_jars
def test_war_nests_jars_one_level_deep() -> None:
    inner = build_war([JAVA / "aopalliance-1.0.jar", JAVA / "commons-io.jar"])
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as ear:
        ear.writestr("app.war", inner)
    found = {(p.name, p.version) for p in java.parse("srv/app.war", inner)}
    assert ("aopalliance:aopalliance", "1.0") in found  # no pom: file name gives both
    assert any(name == "commons-io:commons-io" for name, _ in found)
    assert java.parse("srv/app.ear", outer.getvalue()) == []  # jars two levels down: not read


def _jar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as jar:
        for name, data in members.items():
            jar.writestr(name, data)
    return out.getvalue()


def test_an_archive_holding_only_shaded_poms_is_named_by_its_manifest() -> None:
    shaded = b"groupId=cglib\nartifactId=cglib\nversion=3.2.12\n"
    manifest = (
        b"Manifest-Version: 1.0\nBundle-SymbolicName: com.google.inject\nBundle-Version: 4.2.3\n"
    )
    jar = _jar(
        {"META-INF/MANIFEST.MF": manifest, "META-INF/maven/cglib/cglib/pom.properties": shaded}
    )
    found = {(p.name, p.version) for p in java.parse("lib/guice.jar", jar)}
    assert found == {("cglib:cglib", "3.2.12"), ("com.google.inject:guice", "4.2.3")}
    named = {(p.name, p.version) for p in java.parse("lib/cglib-3.2.12.jar", jar)}
    assert named == {("cglib:cglib", "3.2.12")}  # the pom names the archive: nothing more


def test_manifest_fallback_needs_a_version() -> None:
    manifest = b"Manifest-Version: 1.0\nBundle-SymbolicName: javax.inject\nBundle-Version: 1.0.0\n"
    found = java.parse("lib/javax.inject.jar", _jar({"META-INF/MANIFEST.MF": manifest}))
    assert [(p.name, p.version) for p in found] == [("javax.inject:javax.inject", "1.0.0")]
    bare = _jar({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n"})
    assert java.parse("lib/aopalliance.jar", bare) == []
    assert java.parse("lib/no-manifest-1.0.jar", _jar({"a.class": b"\xca\xfe"})) == []


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("guice-no-aop-4.2.3.jar", ("guice-no-aop", "4.2.3")),
        ("commons-io.jar", ("commons-io", "")),
        ("jetty-rc2.jar", ("jetty", "rc2")),
        ("foo_1.2.jar", ("foo", "1.2")),
        ("maven3-core.jar", ("maven3-core", "")),
    ],
)
def test_file_name_split(filename: str, expected: tuple[str, str]) -> None:
    assert java.filename_parts(filename) == expected


def test_zip_bombs_are_cut_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(java, "MAX_NESTED_BYTES", 1024 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        with bomb.open("META-INF/maven/g/a/pom.properties", "w") as pom:
            pom.write(b"groupId=g\nartifactId=a\nversion=1\n")
            for _ in range(16):
                pom.write(b"#" * (1024 * 1024))  # 16 MiB of comment behind the fields
        with bomb.open("WEB-INF/lib/inner.jar", "w") as inner:
            for _ in range(8):
                inner.write(b"\0" * (1024 * 1024))
        bomb.writestr(
            "WEB-INF/lib/real.jar",
            _jar({"META-INF/maven/h/b/pom.properties": b"groupId=h\nartifactId=b\nversion=2\n"}),
        )
    assert len(out.getvalue()) < 200_000  # a bomb: tiny compressed, 24 MiB inflated
    found = java.parse("srv/bomb.war", out.getvalue())
    assert [(p.name, p.version) for p in found] == [("h:b", "2")]


def test_garbage_and_truncated_archives_give_nothing() -> None:
    jar = _jar({"META-INF/maven/g/a/pom.properties": b"groupId=g\nartifactId=a\nversion=1\n"})
    assert java.parse("x.jar", b"PK\x03\x04 not really") == []
    for cut in range(0, len(jar), 9):
        assert isinstance(java.parse("x.jar", jar[:cut]), list)
    assert java.matches("srv/App.WAR") and java.matches("a.ear") and not java.matches("a.zip")


def test_maven_purl_and_osv_key() -> None:
    package = Package("maven", "org.apache.commons:commons-text", "1.9", "app.jar")
    assert purl(package, None) == "pkg:maven/org.apache.commons/commons-text@1.9"
    query = query_for(package, None)
    assert query is not None and (query.ecosystem, query.name) == (
        "Maven",
        "org.apache.commons:commons-text",
    )
    assert inventory_ecosystem("Maven") == "maven"


# --- all three: seeded random damage ---------------------------------------------------------


def _damaged(data: bytes, seed: int) -> bytes:
    """``data`` with a few bytes overwritten, cut out or inserted (reproducible by seed)."""
    rnd = random.Random(seed)
    out = bytearray(data)
    for _ in range(rnd.randint(1, 20)):
        at = rnd.randrange(len(out))
        choice = rnd.random()
        if choice < 0.6:
            out[at] = rnd.randrange(256)
        elif choice < 0.8:
            del out[at : at + rnd.randint(1, 64)]
        else:
            out[at:at] = rnd.randbytes(rnd.randint(1, 16))
    return bytes(out)


@needs_rpm
@needs_go
@needs_jars
def test_randomly_damaged_files_never_raise(rpmdb: Path, go_binary: Path) -> None:
    """Damage like this found two bugs: SQLite messages that are not UTF-8, zip versions
    that zipfile refuses with NotImplementedError."""
    cases = [
        (rpm.parse, RPMDB, rpmdb.read_bytes()),
        (golang.parse, "bin/app", go_binary.read_bytes()),
        (java.parse, "lib/x.jar", (JAVA / "commons-cli.jar").read_bytes()),
        (java.parse, "lib/x.jar", (JAVA / "aopalliance-1.0.jar").read_bytes()),
    ]
    for parse, path, data in cases:
        for seed in range(150):
            assert isinstance(parse(path, _damaged(data, seed)), list)
