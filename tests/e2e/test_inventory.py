"""Layer scanning end to end: an image built from this machine's real package databases is
pushed through the gatekeeper, inventoried by the ``inventory`` verifier, exported by
``gatekeeper sbom``, and compared with syft's inventory of the same image; a hostile layer is
quarantined while the gatekeeper keeps serving."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import syft
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, sbom, wait_state
from tests.support.layers import config_for, layer, oci_layout
from tests.support.ocihttp import OCI_MANIFEST, push_image, tar_layer
from tests.support.registry import Registry
from verifiers.scan.ecosystems.python import normalise

SITE = Path(sys.prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}")
SITE_PACKAGES = SITE / "site-packages"
NPM = Path("/usr/lib/node_modules/npm")
DPKG = Path("/var/lib/dpkg/status")
PY_DEST = "usr/local/lib/python3.11/site-packages"
GONE = next(iter(sorted(SITE_PACKAGES.glob("httpx-*.dist-info")))).name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DPKG.exists() or not NPM.exists(), reason="needs dpkg and npm files"),
]


def base(tar: tarfile.TarFile) -> None:
    tar.add(str(DPKG), "var/lib/dpkg/status")
    tar.add("/usr/lib/os-release", "usr/lib/os-release")
    link = tarfile.TarInfo("etc/os-release")
    link.type, link.linkname = tarfile.SYMTYPE, "../usr/lib/os-release"
    tar.addfile(link)


def python_layer(tar: tarfile.TarFile) -> None:
    for dist in sorted(SITE_PACKAGES.glob("*.dist-info")):
        tar.add(str(dist), f"{PY_DEST}/{dist.name}")


def npm_layer(tar: tarfile.TarFile) -> None:
    tar.add(str(NPM), "usr/lib/node_modules/npm")


def whiteout_layer(tar: tarfile.TarFile) -> None:
    gone = tarfile.TarInfo(f"{PY_DEST}/.wh.{GONE}")
    tar.addfile(gone, io.BytesIO(b""))


@pytest.fixture(scope="module")
def image_layers() -> list[tuple[bytes, str]]:
    return [layer(b) for b in (base, python_layer, npm_layer, whiteout_layer)]


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [
                {
                    "name": "scan",
                    "repositories": ["scan/*"],
                    "require": ["config-sanity", "inventory"],
                }
            ]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}, "inventory": {}}),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("scan"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


def ours(document: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for component in document["components"]:
        purl = component.get("purl", "")
        if purl:
            kind = purl[4:].split("/", 1)[0]
            name = normalise(component["name"]) if kind == "pypi" else component["name"]
            found.setdefault(kind, set()).add((name, component["version"]))
    return found


@pytest.fixture(scope="module")
def pushed(gk: Gatekeeper, image_layers: list[tuple[bytes, str]]) -> tuple[str, dict[str, Any]]:
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, _ = push_image(
            http, "scan/real", "v1", [data for data, _ in image_layers], config_for(image_layers)
        )
        assert wait_state(gk, digest) == "passed"
        pulled = http.get(f"/v2/scan/real/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert pulled.status_code == 200
    return digest, sbom(gk, f"scan/real@{digest}")


def test_sbom_lists_the_real_packages(pushed: tuple[str, dict[str, Any]]) -> None:
    digest, document = pushed
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.5"
    assert document["metadata"]["component"]["version"] == digest
    found = ours(document)
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package} ${Version}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert found["deb"] == {tuple(x[3:].split(" ", 1)) for x in installed if x.startswith("ii")}
    npm_json = json.loads((NPM / "package.json").read_text())
    assert ("npm", npm_json["version"]) in found["npm"]
    gone = GONE.removesuffix(".dist-info").rsplit("-", 1)
    assert (normalise(gone[0]), gone[1]) not in found["pypi"]  # whited out by the last layer
    assert ("packageurl-python", _version("packageurl_python")) in found["pypi"]
    os_component = next(c for c in document["components"] if c["type"] == "operating-system")
    assert os_component["name"] == "debian"


def _version(dist: str) -> str:
    return (
        next(SITE_PACKAGES.glob(f"{dist}-*.dist-info"))
        .name.removesuffix(".dist-info")
        .split("-")[1]
    )


def test_inventory_finds_what_syft_finds(
    pushed: tuple[str, dict[str, Any]], image_layers: list[tuple[bytes, str]], tmp_path: Path
) -> None:
    oci_layout(tmp_path / "oci", image_layers)
    theirs: dict[str, set[tuple[str, str]]] = {}
    for artifact in syft.scan(tmp_path / "oci", tmp_path):
        kind = {"deb": "deb", "python": "pypi", "npm": "npm"}.get(artifact["type"])
        if kind:
            name = normalise(artifact["name"]) if kind == "pypi" else artifact["name"]
            theirs.setdefault(kind, set()).add((name, artifact["version"]))
    found = ours(pushed[1])
    for kind in ("deb", "pypi", "npm"):
        assert theirs[kind], kind
        assert theirs[kind] <= found.get(kind, set()), (kind, theirs[kind] - found[kind])


def test_hostile_layer_is_quarantined_and_the_gatekeeper_keeps_serving(gk: Gatekeeper) -> None:
    evil, diff_id = tar_layer({"../../etc/passwd": b"root::0:0::/:/bin/sh\n"})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        digest, _ = push_image(http, "scan/evil", "v1", [evil], config)
        assert wait_state(gk, digest) == "quarantined"
        resp = http.get(f"/v2/scan/evil/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert resp.status_code == 403 and "layer.path-traversal" in resp.text
        assert http.get("/healthz").status_code == 200
