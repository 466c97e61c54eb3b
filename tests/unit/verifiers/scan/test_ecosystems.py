"""Each ecosystem parser on real files of this machine (dpkg status, site-packages, npm's own
node_modules) and on an apk database written from apk-tools' documented format."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from tests.support.ecosystems import APK_INSTALLED
from verifiers.scan.ecosystems import apk, dpkg, npm, osrelease, python

DPKG_STATUS = Path("/var/lib/dpkg/status")
NPM_ROOT = Path("/usr/lib/node_modules")


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="not a Debian machine")
def test_dpkg_status_matches_dpkg_query() -> None:
    out = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev}|${Package}|${Version}|${source:Package}|${source:Version}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = {
        (name, version, source, source_version)
        for status, name, version, source, source_version in (
            line.split("|") for line in out.splitlines()
        )
        if status.startswith("ii")
    }
    found = dpkg.parse("var/lib/dpkg/status", DPKG_STATUS.read_bytes())
    assert {(p.name, p.version, p.source_name, p.source_version) for p in found} == expected
    assert all(p.ecosystem == "deb" and p.arch for p in found)


def test_dpkg_paths_include_distroless_status_d() -> None:
    assert dpkg.matches("var/lib/dpkg/status")
    assert dpkg.matches("var/lib/dpkg/status.d/libc6")
    assert not dpkg.matches("var/lib/dpkg/status.d/libc6.md5sums")
    assert not dpkg.matches("var/lib/dpkg/status-old")


@pytest.mark.skipif(not DPKG_STATUS.exists(), reason="not a Debian machine")
def test_distroless_status_d_file_is_one_paragraph() -> None:
    paragraph = DPKG_STATUS.read_text().split("\n\n")[0]
    (found,) = dpkg.parse("var/lib/dpkg/status.d/x", paragraph.encode())
    assert f"Package: {found.name}" in paragraph


def test_dpkg_skips_removed_packages_and_reads_source_versions() -> None:
    text = (
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: libfoo1\nStatus: install ok installed\nSource: foo (1.2-3)\n"
        "Version: 1.2-3+b1\nArchitecture: amd64\nDescription: x\n continued\n"
    )
    (found,) = dpkg.parse("var/lib/dpkg/status", text.encode())
    assert (found.name, found.version, found.source_name, found.source_version) == (
        "libfoo1",
        "1.2-3+b1",
        "foo",
        "1.2-3",
    )


def test_python_dist_info_of_this_interpreter() -> None:
    checked = 0
    for dist in metadata.distributions():
        path = Path(str(dist._path))  # type: ignore[attr-defined]
        if path.suffix != ".dist-info" or not (path / "METADATA").exists():
            continue
        rel = f"usr/lib/python3/site-packages/{path.name}/METADATA"
        assert python.matches(rel)
        (found,) = python.parse(rel, (path / "METADATA").read_bytes())
        assert found.name == python.normalise(dist.metadata["Name"])
        assert found.version == dist.version
        checked += 1
    assert checked > 10


def test_python_egg_info_forms() -> None:
    assert python.matches("usr/lib/python3/dist-packages/foo-1.0.egg-info")
    assert python.matches("usr/lib/python3/dist-packages/foo-1.0.egg-info/PKG-INFO")
    assert not python.matches("usr/lib/python3/dist-packages/foo-1.0.dist-info/RECORD")
    body = b"Metadata-Version: 1.1\nName: Foo.Bar\nVersion: 2.0\n\nName: not-this\n"
    (found,) = python.parse("x.egg-info", body)
    assert (found.name, found.version) == ("foo-bar", "2.0")


@pytest.mark.skipif(not NPM_ROOT.exists(), reason="no global node_modules here")
def test_npm_package_json_of_installed_packages() -> None:
    """Matched files are exactly the package directories under each ``node_modules`` (found by
    walking directories, not by matching paths), and each parses to its own name and version."""
    expected = set()
    for modules in [NPM_ROOT, *NPM_ROOT.rglob("node_modules")]:
        for child in modules.iterdir():
            dirs = child.iterdir() if child.name.startswith("@") and child.is_dir() else [child]
            expected |= {d / "package.json" for d in dirs if (d / "package.json").is_file()}
    matched = {m for m in NPM_ROOT.rglob("package.json") if npm.matches(str(m.relative_to("/")))}
    assert matched == expected and len(matched) > 50
    for manifest in matched:
        doc = json.loads(manifest.read_bytes())
        found = npm.parse(str(manifest.relative_to("/")), manifest.read_bytes())
        if doc.get("name") and doc.get("version"):
            assert [(p.name, p.version) for p in found] == [(doc["name"], doc["version"])]


def test_npm_scoped_and_nested() -> None:
    assert npm.matches("app/node_modules/@types/node/package.json")
    assert npm.matches("app/node_modules/a/node_modules/b/package.json")
    assert not npm.matches("app/node_modules/a/lib/package.json")
    assert not npm.matches("app/package.json")
    assert npm.parse("app/node_modules/x/package.json", b"{not json") == []


def test_apk_installed_database() -> None:
    assert apk.matches("lib/apk/db/installed")
    found = apk.parse("lib/apk/db/installed", APK_INSTALLED)
    assert [(p.name, p.version, p.source_name, p.arch) for p in found] == [
        ("musl", "1.2.4_git20230717-r4", "musl", "x86_64"),
        ("libcrypto3", "3.1.4-r5", "openssl", "x86_64"),
    ]


@pytest.mark.skipif(not Path("/usr/lib/os-release").exists(), reason="no os-release")
def test_os_release_of_this_machine() -> None:
    text = Path("/usr/lib/os-release").read_text()
    found = osrelease.parse("usr/lib/os-release", text.encode())
    assert found is not None
    assert f"ID={found.id}" in text
    assert found.version_id == "" or found.version_id in text
