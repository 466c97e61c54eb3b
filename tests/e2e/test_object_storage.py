"""The registry on object storage, as teams running Distribution at scale have it: its ``s3``
driver against a real S3-compatible server on loopback (moto), blob reads answered with ``307``
to presigned URLs, the gatekeeper in front (issue 23).

Pushed images are verified by reading their config and layers through those redirects
(inventory and secrets included); a clean image is pulled by skopeo with its blobs coming from
the object store; an image carrying a secret is quarantined and none of its blobs is redirected
to a pull-only identity; Range GETs work whether the redirect goes to the client or is followed
by the gatekeeper. When the store cannot be reached during verification, the image is not left
pending: its verdict is a failure that says why, until a re-verification passes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import bypass
from tests.support.bypass import Accounts, Image, clean_layer, denied, leaking_layer, push_image
from tests.support.clients import Skopeo
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.objectstore import Moto, StoreGate, make_s3_registry, start_moto
from tests.support.ocihttp import digest_of
from tests.support.registry import Registry

pytestmark = [pytest.mark.e2e]

API = "/admin/api/v1"
ACCEPT = {"Accept": bypass.ACCEPT}
POLICIES = [
    {
        "name": "team",
        "repositories": ["team/*"],
        "require": ["config-sanity", "inventory", "secrets"],
        "hold_seconds": 20,
    }
]
VERIFIERS: dict[str, dict[str, Any]] = {"config-sanity": {}, "inventory": {}, "secrets": {}}
DPKG = (
    b"Package: tzdata\nStatus: install ok installed\nVersion: 2024a-0+deb12u1\nArchitecture: all\n"
)


@dataclass
class World:
    moto: Moto
    gate: StoreGate
    registry: Registry
    gk: Gatekeeper
    accounts: Accounts

    def client(self, who: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=self.gk.url, headers=who, timeout=120)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("objectstore")
    moto = start_moto(workdir)
    gate = StoreGate(("127.0.0.1", int(moto.url.rsplit(":", 1)[1])))
    registry = make_s3_registry(workdir / "registry", gate.url)
    try:
        with bypass.bypass_gatekeeper(
            workdir / "gk",
            registry.url,
            GATEKEEPER_POLICIES=json.dumps(POLICIES),
            GATEKEEPER_VERIFIERS=json.dumps(VERIFIERS),
            GATEKEEPER_VERIFICATION__MAX_ATTEMPTS="2",
            GATEKEEPER_VERIFICATION__RETRY_BASE_SECONDS="0.2",
        ) as gk:
            yield World(moto, gate, registry, gk, bypass.make_accounts(gk))
    finally:
        registry.stop()
        gate.close()
        moto.stop()


def state_of(world: World, image: Image, timeout: float = 90) -> dict[str, Any]:
    """The verdict row once it is no longer pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = world.gk.database.fetch(
            "SELECT * FROM verdicts WHERE repository = :r AND digest = :d",
            {"r": image.repository, "d": image.digest},
        )
        if rows and rows[0]["state"] != "pending":
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"{image.repository}@{image.digest} still pending")


def reasons(row: dict[str, Any]) -> list[str]:
    value = row["reasons"]
    return list(json.loads(value) if isinstance(value, str) else value)


def outcomes(row: dict[str, Any]) -> dict[str, str]:
    value = row["outcomes"]
    stored = json.loads(value) if isinstance(value, str) else value
    return {o["verifier"]: o["status"] for o in stored}


def blob_paths(image: Image) -> list[str]:
    blobs = [image.config, *image.layers]
    return [f"/v2/{image.repository}/blobs/{digest_of(blob)}" for blob in blobs]


def test_a_clean_image_is_verified_through_the_store_and_pulled_from_it(
    world: World, tmp_path: Path
) -> None:
    before = world.gate.presigned
    with world.client(world.accounts.pusher) as http:
        packaged = bypass.tar_layer({"var/lib/dpkg/status": DPKG})
        image = push_image(http, "team/clean", "v1", [clean_layer(), packaged])
    verdict = state_of(world, image)
    assert verdict["state"] == "passed", reasons(verdict)
    ran = outcomes(verdict)
    assert ran["inventory"] == "ok" and ran["secrets"] == "ok", ran
    # The config and both layers were read through presigned URLs (the registry redirects all).
    assert world.gate.presigned - before >= 3
    packages = world.gk.database.fetch(
        "SELECT name FROM image_packages WHERE repository = :r AND digest = :d",
        {"r": image.repository, "d": image.digest},
    )
    assert [p["name"] for p in packages] == ["tzdata"]

    skopeo = Skopeo(tmp_path / "skopeo", [world.gk.host])
    reader = world.accounts.reader["Authorization"].split(" ", 1)[1]
    auths = {"auths": {world.gk.host: {"auth": reader}}}
    (skopeo.workdir / "auth.json").write_text(json.dumps(auths), encoding="utf-8")
    before = world.gate.presigned
    run = skopeo.copy(f"docker://{world.gk.host}/team/clean:v1", f"dir:{tmp_path / 'out'}")
    # skopeo logs only the URLs it was given; the store counts what it served: the config
    # and the two layers, straight to skopeo (the gatekeeper sent no byte of them).
    assert world.gate.presigned - before == 3
    pulled = [r.path for r in run.requests if "/blobs/" in r.path]
    assert sorted(pulled) == sorted(blob_paths(image))
    for blob in (image.config, *image.layers):
        assert (tmp_path / "out" / digest_of(blob).split(":")[1]).read_bytes() == blob
    rows = world.gk.wait_audit(
        3, "action = 'blob.pull' AND repository = 'team/clean' AND identity = 'rob'"
    )
    assert {r["decision"] for r in rows} == {"allow:redirect"}
    assert all(r["status"] == 307 and r["bytes_out"] == 0 for r in rows)


def test_a_planted_secret_is_quarantined_and_no_blob_is_redirected(world: World) -> None:
    with world.client(world.accounts.pusher) as http:
        image = push_image(http, "team/leaky", "v1", [clean_layer(), leaking_layer()])
    verdict = state_of(world, image)
    assert verdict["state"] == "quarantined"
    assert outcomes(verdict)["secrets"] == "ok"
    findings = world.gk.database.fetch(
        "SELECT verifier, rule_id FROM findings WHERE repository = :r AND digest = :d",
        {"r": image.repository, "d": image.digest},
    )
    assert any(f["verifier"] == "secrets" for f in findings), findings
    before = world.gate.presigned
    with world.client(world.accounts.reader) as reader:
        denied(reader.get(f"/v2/team/leaky/manifests/{image.digest}", headers=ACCEPT))
        for path in blob_paths(image):
            for method in ("GET", "HEAD"):
                resp = reader.request(method, path)
                assert resp.status_code == 403, (method, path, resp.status_code)
                assert "Location" not in resp.headers
    assert world.gate.presigned == before  # not one presigned URL was handed out and used
    rows = world.gk.wait_audit(
        6, "repository = 'team/leaky' AND identity = 'rob' AND action LIKE 'blob.%'"
    )
    assert {r["decision"] for r in rows} == {"deny"}
    assert all(r["upstream_status"] is None for r in rows)  # the registry was never asked


def test_range_gets_work_through_the_redirect_and_through_the_gatekeeper(
    world: World, tmp_path: Path
) -> None:
    with world.client(world.accounts.pusher) as http:
        image = push_image(http, "team/ranged", "v1", [clean_layer()])
    assert state_of(world, image)["state"] == "passed"
    layer = image.layers[0]
    path = f"/v2/team/ranged/blobs/{digest_of(layer)}"
    wanted = {"Range": "bytes=100-1099"}
    with world.client(world.accounts.reader) as reader:
        redirect = reader.get(path, headers=wanted)
        assert redirect.status_code == 307
        assert redirect.headers["Location"].startswith(world.gate.url)
        # The client follows it, Range and all, without the gatekeeper's credentials.
        direct = httpx.get(redirect.headers["Location"], headers=wanted, timeout=60)
        assert direct.status_code == 206 and direct.content == layer[100:1100]
    proxying = make_gatekeeper(
        tmp_path / "proxying",
        world.registry.url,
        database=world.gk.database,
        extra_env={**_shared_settings(world.gk), "GATEKEEPER_BLOB_REDIRECTS": "proxy"},
    )
    try:
        with httpx.Client(
            base_url=proxying.url, headers=world.accounts.reader, timeout=60
        ) as reader:
            part = reader.get(path, headers=wanted)
            whole = reader.get(path)
            # The same digest asked for in a repository that does not hold it (issue 13).
            elsewhere = reader.get(path.replace("ranged", "leaky"))
        assert part.status_code == 206 and part.content == layer[100:1100]
        assert part.headers["Content-Range"] == f"bytes 100-1099/{len(layer)}"
        assert whole.status_code == 200 and whole.content == layer
        assert whole.headers["Docker-Content-Digest"] == digest_of(layer)
        assert elsewhere.status_code == 404, elsewhere.text
        assert elsewhere.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        assert layer not in elsewhere.content
        # One access log for both replicas: the first one's redirect, then this one's streams.
        rows = proxying.wait_audit(3, "action = 'blob.pull' AND repository = 'team/ranged'")
        assert [r["decision"] for r in rows] == ["allow:redirect", *["allow:followed"] * 2]
        assert [r["bytes_out"] for r in rows] == [0, 1000, len(layer)]
    finally:
        proxying.stop()


def _shared_settings(gk: Gatekeeper) -> dict[str, str]:
    """A second replica's settings: the first one's, with no verification workers of its own."""
    keep = ("GATEKEEPER_AUTH__", "GATEKEEPER_POLICIES", "GATEKEEPER_VERIFIERS")
    shared = {k: v for k, v in gk.env.items() if k.startswith(keep)}
    return {**shared, "GATEKEEPER_VERIFICATION__WORKERS": "0"}


def admin_cli(gk: Gatekeeper, *args: str) -> str:
    done = run_cli(
        gk,
        *args,
        env={
            "PATH": gk.env["PATH"],
            "PYTHONPATH": gk.env["PYTHONPATH"],
            "HOME": gk.env["HOME"],
            "GATEKEEPER_ADMIN_URL": gk.url,
            "GATEKEEPER_ADMIN_TOKEN": bypass.ADMIN_TOKEN,
        },
        replace_env=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_unreachable_store_fails_verification_with_its_reason_until_a_rescan(
    world: World,
) -> None:
    world.gate.refuse_presigned = True  # the registry still reaches it; the gatekeeper cannot
    try:
        with world.client(world.accounts.pusher) as http:
            image = push_image(http, "team/cutoff", "v1", [clean_layer()])
        verdict = state_of(world, image)
    finally:
        world.gate.refuse_presigned = False
    ref = f"team/cutoff@{image.digest}"
    assert world.gate.refused >= 2  # both attempts tried the store
    assert verdict["state"] == "quarantined"
    why = reasons(verdict)[0]
    assert why.startswith("verification could not complete: ")
    assert "the registry's object storage " in why
    assert "after 2 attempts" in why

    listed = admin_cli(world.gk, "quarantine", "list", "--state", "quarantined")
    assert ref in listed and "verification could not complete" in listed
    with world.client(bypass.ADMIN) as admin:
        shown = admin.get(f"{API}/images/{ref}").json()
        metrics = admin.get("/metrics").text
    assert shown["state"] == "quarantined" and shown["reasons"][0] == why
    assert [(f["verifier"], f["rule_id"]) for f in shown["findings"]] == [
        ("gatekeeper", "verification.incomplete")
    ]
    assert "gatekeeper_verifications_incomplete_total 1.0" in metrics
    with world.client(world.accounts.reader) as reader:
        message = denied(reader.get(f"/v2/team/cutoff/manifests/{image.digest}", headers=ACCEPT))
    assert "verification could not complete" in message

    admin_cli(world.gk, "quarantine", "rescan", ref)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = world.gk.database.fetch(
            "SELECT state FROM verdicts WHERE repository = 'team/cutoff'"
        )
        if rows[0]["state"] == "passed":
            break
        time.sleep(0.2)
    assert rows[0]["state"] == "passed"
    with world.client(world.accounts.reader) as reader:
        pulled = reader.get(f"/v2/team/cutoff/manifests/{image.digest}", headers=ACCEPT)
    assert pulled.status_code == 200
    findings = world.gk.database.fetch(
        "SELECT verifier FROM findings WHERE repository = 'team/cutoff'"
    )
    assert "gatekeeper" not in {f["verifier"] for f in findings}  # the failure is gone
