"""An Alpine image: the apk installed database (a fixture in apk-tools' documented format, as
Alpine 3.19 writes it) and Alpine's os-release, pushed through the gatekeeper; the inventory
lists what syft lists for it, with Alpine purls."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import syft
from tests.support.ecosystems import APK_INSTALLED
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, sbom, wait_state
from tests.support.layers import config_for, layer, oci_layout
from tests.support.ocihttp import push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

OS_RELEASE = b"""NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine Linux v3.19"
HOME_URL="https://alpinelinux.org/"
"""


def alpine(tar: tarfile.TarFile) -> None:
    for name, data in (("etc/os-release", OS_RELEASE), ("lib/apk/db/installed", APK_INSTALLED)):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [{"name": "scan", "repositories": ["apk/*"], "require": ["config-sanity", "inventory"]}]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}, "inventory": {}}),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("apk"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


def test_apk_inventory_matches_syft(gk: Gatekeeper, tmp_path: Path) -> None:
    layers = [layer(alpine)]
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, _ = push_image(http, "apk/base", "v1", [d for d, _ in layers], config_for(layers))
    assert wait_state(gk, digest) == "passed"
    components: list[dict[str, Any]] = sbom(gk, f"apk/base@{digest}")["components"]
    ours = {
        (c["name"], c["version"]) for c in components if c.get("purl", "").startswith("pkg:apk/")
    }
    assert ours == {("musl", "1.2.4_git20230717-r4"), ("libcrypto3", "3.1.4-r5")}
    purls = {c.get("purl") for c in components}
    assert "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1" in purls
    oci_layout(tmp_path / "oci", layers)
    theirs = {
        (a["name"], a["version"])
        for a in syft.scan(tmp_path / "oci", tmp_path)
        if a["type"] == "apk"
    }
    assert theirs == ours
