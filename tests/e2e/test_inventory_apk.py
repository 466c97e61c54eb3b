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

from tests.e2e.test_inventory import config_for, layer, oci_layout, sbom, wait_state
from tests.support import syft
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

OS_RELEASE = b"""NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine Linux v3.19"
HOME_URL="https://alpinelinux.org/"
"""

APK_INSTALLED = b"""C:Q1kNsGxkYFVYSJtbH2zyaMk5h4QIs=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407255
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1705428390
c:0c04d6c5bae6f2ee4bc4f2c6a8bc1c5d0e0d6c2d
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Ej3Ej1xF5jmpF6uY0ZJHzxjhxo0=

C:Q1lkj6BPhwEIcjNhNrkNd0pSDuA7Q=
P:libcrypto3
V:3.1.4-r5
A:x86_64
S:1748364
I:4399104
T:Crypto library from openssl
U:https://www.openssl.org/
L:Apache-2.0
o:openssl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1706884442
c:ee8f8e4bd3b6d1e6a0d2e1d6a4b7c3f2a1e0d9c8
F:usr/lib
R:libcrypto.so.3

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
