"""What a scanner cannot read is not scanned, and not a pass (issue 22, item 3), through the real
registry: an image whose only AWS keys sit at a 4,278-byte path (over ``max_path_length``, so
the layer reader passes over the entry) is quarantined by a policy requiring ``secrets`` at the
default threshold, with ``secret.not-inspected`` carried by the layer, and neither its
manifest nor its layer is served; an image with nothing to hide, a large text file and
binaries among it, passes and is served whole."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import string
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper, wait_state
from tests.support.layers import layer
from tests.support.ocihttp import OCI_MANIFEST, created, digest_of, push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.e2e]

TOKEN = "inspect-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LONG_PATH = "srv/" + "d" * 246 + "/" + "/".join(["k" * 250] * 16) + "/credentials"


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    env = {
        # no severity_threshold: the default, high
        "GATEKEEPER_POLICIES": json.dumps(
            [{"name": "secrets", "repositories": ["inspect/*"], "require": ["secrets"]}]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps({"secrets": {}}),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
    }
    with running_gatekeeper(tmp_path_factory.mktemp("inspect"), registry.url, env) as started:
        yield started


def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def config(diff_id: str) -> bytes:
    return json.dumps(
        {
            "created": created(),
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "app"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()


def push(gk: Gatekeeper, repo: str, data: bytes, diff_id: str) -> dict[str, Any]:
    """Push a one-layer image; its verdict, its findings, and what pulls of it get."""
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, _ = push_image(http, repo, "v1", [data], config(diff_id))
        state = wait_state(gk, digest, timeout=120)
        shown = http.get(f"/admin/api/v1/images/{repo}@{digest}", headers=AUTH)
        assert shown.status_code == 200, shown.text
        manifest = http.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        blob = http.get(f"/v2/{repo}/blobs/{digest_of(data)}")
    return {"state": state, "image": shown.json(), "manifest": manifest, "blob": blob}


def findings(pushed: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (f["rule_id"], f["severity"], f["location"], f["evidence"])
        for f in pushed["image"]["findings"]
    ]


def denied(resp: httpx.Response) -> str:
    assert resp.status_code == 403, resp.text
    error = resp.json()["errors"][0]
    assert error["code"] == "DENIED"
    return str(error["message"])


def test_keys_at_a_path_too_long_to_read_quarantine_the_image(gk: Gatekeeper) -> None:
    assert len(LONG_PATH.encode()) == 4278
    key_id = "AKIA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)
    )

    def keys(tar: tarfile.TarFile) -> None:
        add(tar, LONG_PATH, f"[default]\naws_access_key_id = {key_id}\n".encode(), 0o600)

    data, diff_id = layer(keys)
    pushed = push(gk, "inspect/hidden", data, diff_id)
    assert pushed["state"] == "quarantined"
    assert findings(pushed) == [
        (
            "secret.not-inspected",
            "high",
            digest_of(data),
            "1 not inspected: 1 with a path over max_path_length",
        )
    ]
    assert "secret.not-inspected" in denied(pushed["manifest"])
    denied(pushed["blob"])  # the layer, asked for by itself, is not served either
    assert key_id[4:] not in json.dumps(pushed["image"])


def test_an_image_with_a_large_text_file_and_binaries_passes(gk: Gatekeeper) -> None:
    tool = Path(shutil.which("ls") or "/bin/ls").read_bytes()  # a real program

    def clean(tar: tarfile.TarFile) -> None:
        add(tar, "usr/local/bin/ls", tool, 0o755)
        add(tar, "opt/app/data.bin", b"\0" + os.urandom(3 * 1024 * 1024), 0o644)
        log = b"".join(b"GET /items/%d 200 1.2ms\n" % n for n in range(150_000))
        assert len(log) > 3 * 1024 * 1024  # three windows past secrets' max_file_bytes
        add(tar, "var/log/app.log", log)
        add(tar, "etc/app/app.conf", b"listen = 0.0.0.0:8080\npassword_file = /run/pw\n")

    data, diff_id = layer(clean)
    pushed = push(gk, "inspect/clean", data, diff_id)
    assert pushed["state"] == "passed", findings(pushed)
    assert findings(pushed) == []
    assert pushed["manifest"].status_code == 200, pushed["manifest"].text
    assert pushed["blob"].status_code == 200 and pushed["blob"].content == data
