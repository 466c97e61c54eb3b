"""RPM, Go and Java inventory end to end: an image holding an ``rpmdb.sqlite`` written by
Debian's ``rpm``, a program built by Debian's Go with a replaced dependency, the jars of
Debian's Java library packages (``/usr/share/java``) and a war nesting real jars is pushed
through the gatekeeper; its SBOM lists everything syft finds on the same image for those
ecosystems, and importing the Go database's real standard-library advisories for go1.19.8
quarantines it with those advisory ids."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import syft
from tests.support.ecosystems import (
    JAVA,
    PACKAGES,
    build_go_binary,
    build_rpmdb,
    build_war,
    have_go,
    have_rpm,
    java_archives,
)
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli, sbom, wait_state
from tests.support.layers import config_for, layer, oci_layout
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry
from tests.support.testdata import OSV_GO

GO_RECORDS = OSV_GO
NESTED = [JAVA / "aopalliance-1.0.jar", JAVA / "commons-io.jar"]
"""One nested jar named only by its file name and manifest, one with pom.properties."""

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_go(), reason="needs Debian's Go (apt-get install golang-go)"),
    pytest.mark.skipif(
        not have_rpm(), reason="needs Debian's rpm and rpmbuild (apt-get install rpm)"
    ),
    pytest.mark.skipif(not java_archives(), reason="needs jars of Debian Java library packages"),
]


@pytest.fixture(scope="module")
def image_layers(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, str]]:
    work = tmp_path_factory.mktemp("ecosystems")
    rpmdb = build_rpmdb(work / "rpm")
    binary = build_go_binary(work / "go")
    war = build_war(NESTED)
    goroot = Path(
        subprocess.run(
            ["go", "env", "GOROOT"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )

    def base(tar: tarfile.TarFile) -> None:
        tar.add("/usr/lib/os-release", "etc/os-release")
        tar.add(str(rpmdb), "var/lib/rpm/rpmdb.sqlite")

    def java(tar: tarfile.TarFile) -> None:
        for jar in java_archives():
            tar.add(str(jar.resolve()), f"usr/share/java/{jar.name}")
        member = tarfile.TarInfo("srv/app.war")
        member.size = len(war)
        tar.addfile(member, io.BytesIO(war))

    def go(tar: tarfile.TarFile) -> None:
        tar.add(str(binary), "usr/local/bin/app")  # mode 0755 as go build wrote it
        tar.add(str(goroot / "bin" / "gofmt"), "usr/local/go/bin/gofmt")  # no module: cmd/gofmt
        script = b"#!/bin/sh\n" + b"# not a Go program\n" * 100
        member = tarfile.TarInfo("usr/local/bin/hello.sh")
        member.size, member.mode = len(script), 0o755
        tar.addfile(member, io.BytesIO(script))

    return [layer(build) for build in (base, java, go)]


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [
                {
                    "name": "ecosystems",
                    "repositories": ["eco/*"],
                    "require": ["inventory", "vulnerabilities"],
                    "severity_threshold": "medium",  # the Go database states no severity
                }
            ]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps({"inventory": {}, "vulnerabilities": {}}),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("eco"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


@pytest.fixture(scope="module")
def pushed(gk: Gatekeeper, image_layers: list[tuple[bytes, str]]) -> tuple[str, dict[str, Any]]:
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, _ = push_image(
            http, "eco/app", "v1", [data for data, _ in image_layers], config_for(image_layers)
        )
    assert wait_state(gk, digest) == "passed"  # no advisories imported yet
    return digest, sbom(gk, f"eco/app@{digest}")


def components(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in document["components"] if c.get("purl")]


def path_of(component: dict[str, Any]) -> str:
    return str(next(p["value"] for p in component["properties"] if p["name"] == "gatekeeper:path"))


def test_sbom_lists_rpm_go_and_java_packages(pushed: tuple[str, dict[str, Any]]) -> None:
    found = {c["purl"].split("@")[0]: c for c in components(pushed[1])}
    for package in PACKAGES:
        rpm = found[f"pkg:rpm/debian/{package['name']}"]
        epoch = f"{package['epoch']}:" if package["epoch"] else ""
        assert rpm["version"] == f"{epoch}{package['version']}-{package['release']}"
        assert "arch=noarch" in rpm["purl"] and "distro=debian-12" in rpm["purl"]
    go_version = subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    stdlib = found["pkg:golang/stdlib"]
    assert stdlib["version"] == go_version
    assert stdlib["purl"] == f"pkg:golang/stdlib@{go_version.removeprefix('go')}"
    assert "pkg:golang/example.com/app" in found
    go_paths = {path_of(c) for c in components(pushed[1]) if c["purl"].startswith("pkg:golang/")}
    assert go_paths == {"usr/local/bin/app", "usr/local/go/bin/gofmt"}  # not the script
    assert found["pkg:maven/commons-io/commons-io"]["version"]
    in_war = {c["name"] for c in components(pushed[1]) if path_of(c) == "srv/app.war"}
    assert {"commons-io:commons-io", "aopalliance:aopalliance"} <= in_war


def syft_packages(image_layers: list[tuple[bytes, str]], work: Path) -> list[dict[str, Any]]:
    oci_layout(work / "oci", image_layers)
    return syft.scan(work / "oci", work)


def test_inventory_finds_what_syft_finds(
    pushed: tuple[str, dict[str, Any]], image_layers: list[tuple[bytes, str]], tmp_path: Path
) -> None:
    """Per ecosystem, syft's (name, version, path) are ours. Maven names are compared by
    artifact id (ours are ``group:artifact``). Two kinds of syft java entry are compared by
    (version, path) only: those it names from the manifest because no ``pom.properties``
    names the archive after its file name (``Bundle-SymbolicName`` cut at its last dot, say);
    we name such archives by their Maven coordinates when there are any. Entries syft lists
    with version ``UNKNOWN`` (no version anywhere) we do not list."""
    ours: dict[str, set[tuple[str, str, str]]] = {}
    for component in components(pushed[1]):
        kind = component["purl"][4:].split("/", 1)[0]
        name = component["name"].rpartition(":")[2] if kind == "maven" else component["name"]
        ours.setdefault(kind, set()).add((name, component["version"], path_of(component)))
    theirs: dict[str, set[tuple[str, str, str]]] = {}
    loose: set[tuple[str, str]] = set()
    for artifact in syft_packages(image_layers, tmp_path):
        kind = {"rpm": "rpm", "go-module": "golang", "java-archive": "maven"}.get(artifact["type"])
        if kind is None or artifact["version"] == "UNKNOWN":
            continue
        path = artifact["locations"][0]["path"].lstrip("/")
        pom = (artifact.get("metadata") or {}).get("pomProperties")
        if kind == "maven" and not pom:
            loose.add((artifact["version"], path))
        theirs.setdefault(kind, set()).add((artifact["name"], artifact["version"], path))
    for kind in ("rpm", "golang", "maven"):
        assert theirs[kind], kind
        missing = {t for t in theirs[kind] - ours.get(kind, set()) if t[1:] not in loose}
        assert not missing, (kind, missing)
    versions_at = {(version, path) for _, version, path in ours["maven"]}
    assert loose <= versions_at, loose - versions_at


@pytest.mark.testdata
def test_go_advisories_quarantine_the_image(
    gk: Gatekeeper, pushed: tuple[str, dict[str, Any]]
) -> None:
    digest = pushed[0]
    expected = {json.loads(p.read_text())["id"] for p in GO_RECORDS.glob("*.json")}
    assert expected
    done = run_cli(gk, "advisories", "import", str(GO_RECORDS), timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(expected)} added" in done.stdout, done.stdout
    deadline = time.monotonic() + 60
    while wait_state(gk, digest) != "quarantined" and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = gk.database.fetch(
        "SELECT rule_id, location FROM findings WHERE digest = :d AND verifier = 'vulnerabilities'",
        {"d": digest},
    )
    assert {r["rule_id"] for r in rows} == expected, rows
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get(f"/v2/eco/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 403, resp.text
    message = resp.json()["errors"][0]["message"]
    assert any(advisory in message for advisory in expected), message
