"""Hostile layers pushed through the gatekeeper: each is a finding and a verdict within the
scan's time limit, and the gatekeeper keeps serving (``../`` paths are in test_inventory.py).

The layers are the ones the reader's unit tests read (``tests/support/tars.py``): a gzip bomb
that would inflate to 16 GiB (about 16 MiB pushed), a million empty files, and a gzip stream cut
in half."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, wait_state
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry
from tests.support.tars import gzip_bomb, many_entries

pytestmark = pytest.mark.e2e

SCAN_SECONDS = 60


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [{"name": "scan", "repositories": ["hostile/*"], "require": ["inventory"]}]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {"inventory": {"options": {"max_seconds": SCAN_SECONDS}}}
        ),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("hostile"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


def truncated() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = bytes(range(256)) * 4000
        info = tarfile.TarInfo("big")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    whole = gzip.compress(raw.getvalue())
    return whole[: len(whole) // 2]


LAYERS: dict[str, tuple[Callable[[], bytes], str]] = {
    "gzip-bomb": (lambda: b"".join(gzip_bomb(16)), "layer.compression-bomb"),
    "million-entries": (lambda: b"".join(many_entries(1_000_000)), "layer.too-many-entries"),
    "truncated-gzip": (truncated, "layer.truncated"),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_hostile_layer_is_a_finding_and_a_verdict(gk: Gatekeeper, kind: str) -> None:
    build, rule = LAYERS[kind]
    layer = build()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
        }
    ).encode()
    repo = f"hostile/{kind}"
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, _ = push_image(http, repo, "v1", [layer], config)
        # Within the scan limit plus the time to queue and record the verdict.
        assert wait_state(gk, digest, timeout=SCAN_SECONDS + 30) == "quarantined"
        resp = http.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert resp.status_code == 403 and rule in resp.text, resp.text
        assert http.get("/healthz").status_code == 200
        assert http.get("/v2/").status_code in (200, 401)
