"""Verification cannot be starved (issue 22, item 4), through the real registry with
authentication on: while one identity floods the queue with manifests listing one layer
10,000 times and hundreds of tiny images, another identity's single image gets its verdict
within 10 s; and a pull waiting for an image puts its job ahead of the queue.

Every image goes through the six real scanning verifiers. The flood's tiny images also carry a
``test.sleep`` label that the ``slow`` fake verifier honours: each holds a worker for a second,
as scanning a real image of some size does, so the flood outruns the workers on a small test
machine and a backlog builds (the gatekeeper serving the pushes and running the scans shares
its CPU with them, so scans alone would keep up with pushes here)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.layers import layer
from tests.support.ocihttp import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    image_config,
    push_blob,
    push_image,
)
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e
SERVICE = "registry-gatekeeper"
FAKES = "tests.fakes.verifiers"
SCANS = ["config-sanity", "inventory", "vulnerabilities", "secrets", "malware", "hardening"]
FLOOD_JOB_SECONDS = "1"
"""Worker time each tiny flood image costs (``test.sleep`` for the ``slow`` verifier)."""
FLOOD_REPOS = [f"flood/r{n}" for n in range(8)]
HEAVY = 4
"""Manifests listing one layer 10,000 times, as in the issue."""
REPEATS = 10_000
BACKLOG = 100
"""Flood jobs waiting in the queue before the victim pushes."""


def cli(gk: Gatekeeper, *args: str) -> str:
    out = run_cli(gk, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def user(gk: Gatekeeper, name: str, grant: str) -> str:
    """Create a user; its password (the CLI prints it once, last)."""
    return cli(gk, "users", "create", name, "--grant", grant).strip().splitlines()[-1].split()[-1]


def client(gk: Gatekeeper, name: str, secret: str, repositories: list[str]) -> httpx.Client:
    """A client holding a bearer token for pull and push on ``repositories``."""
    resp = httpx.get(
        f"{gk.url}/auth/token",
        params=[
            ("service", SERVICE),
            *(("scope", f"repository:{r}:pull,push") for r in repositories),
        ],
        auth=(name, secret),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    headers = {"Authorization": f"Bearer {resp.json()['token']}"}
    return httpx.Client(base_url=gk.url, headers=headers, timeout=120)


def tiny_layer() -> bytes:
    """A real gzip'd tar with one small file of its own, so each image needs its own read."""

    def build(tar: tarfile.TarFile) -> None:
        data = os.urandom(64).hex().encode()
        entry = tarfile.TarInfo("etc/motd")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))

    return layer(build)[0]


def push_heavy(http: httpx.Client, repo: str, n: int) -> None:
    """A manifest listing one layer ``REPEATS`` times (it passes every check)."""
    blob = tiny_layer()
    config = image_config({"heavy": str(n)}, layers=REPEATS)
    push_blob(http, repo, blob)
    push_blob(http, repo, config)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, blob)] * REPEATS,
    }
    resp = http.put(
        f"/v2/{repo}/manifests/heavy{n}",
        content=json.dumps(doc).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status_code == 201, resp.text


class Flood:
    """The flooding identity: heavy manifests first, then tiny images from a few threads
    until stopped."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.stop = threading.Event()
        self.pushed = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._tiny, args=(n,)) for n in range(3)]

    def start(self) -> None:
        for n in range(HEAVY):
            push_heavy(self.http, FLOOD_REPOS[n % len(FLOOD_REPOS)], n)
        for thread in self._threads:
            thread.start()

    def _tiny(self, worker: int) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                repo = FLOOD_REPOS[(worker + n) % len(FLOOD_REPOS)]
                config = image_config({"test.sleep": FLOOD_JOB_SECONDS, "n": f"{worker}-{n}"})
                push_image(self.http, repo, f"t{worker}-{n}", [tiny_layer()], config)
                n += 1
                with self._lock:
                    self.pushed += 1
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.errors.append(exc)

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


def queued(gk: Gatekeeper, identity: str) -> int:
    rows = gk.database.fetch(
        "SELECT count(*) AS n FROM jobs WHERE identity = :i AND state = 'queued'", {"i": identity}
    )
    return int(rows[0]["n"])


def verdict(gk: Gatekeeper, digest: str) -> str | None:
    rows = gk.database.fetch("SELECT state FROM verdicts WHERE digest = :d", {"d": digest})
    return str(rows[0]["state"]) if rows else None


@pytest.fixture
def flood_gk(registry: Registry, tmp_path: Path) -> Iterator[Gatekeeper]:
    denylist = tmp_path / "denylist"
    denylist.write_text("0" * 64 + "\n")
    require = [*SCANS, "slow"]
    policies = [{"name": "scanned", "repositories": ["*"], "require": require, "hold_seconds": 30}]
    verifiers: dict[str, object] = {name: {} for name in SCANS}
    verifiers["malware"] = {"options": {"denylist": str(denylist)}}
    verifiers["slow"] = {"plugin": f"{FAKES}:Slow"}
    gatekeeper = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        extra_env={
            "GATEKEEPER_AUTH__ENABLED": "true",
            "GATEKEEPER_POLICIES": json.dumps(policies),
            "GATEKEEPER_VERIFIERS": json.dumps(verifiers),
            "GATEKEEPER_MAX_MANIFEST_LAYERS": str(REPEATS),
            "GATEKEEPER_LOG_LEVEL": "WARNING",
        },
    )
    yield gatekeeper
    gatekeeper.stop()


def test_another_identitys_image_gets_its_verdict_within_10_s_under_a_flood(
    flood_gk: Gatekeeper,
) -> None:
    gk = flood_gk
    mallory = user(gk, "mallory", "flood/*=pull,push")
    victor = user(gk, "victor", "team/*=pull,push")
    flood = Flood(client(gk, "mallory", mallory, FLOOD_REPOS))
    victim = client(gk, "victor", victor, ["team/app"])
    try:
        flood.start()
        deadline = time.monotonic() + 180
        while queued(gk, "mallory") < BACKLOG:
            assert time.monotonic() < deadline, f"the flood queued only {queued(gk, 'mallory')}"
            assert not flood.errors, flood.errors
            time.sleep(0.2)
        digest, _ = push_image(victim, "team/app", "v1", [tiny_layer()])
        pushed = time.monotonic()
        ahead = queued(gk, "mallory")
        while verdict(gk, digest) in (None, "pending"):
            assert time.monotonic() - pushed < 60, "no verdict in 60 s"
            time.sleep(0.05)
        waited = time.monotonic() - pushed
        behind = queued(gk, "mallory")
        still_flooding = flood.pushed
    finally:
        flood.join()
    assert not flood.errors, flood.errors
    print(
        f"\nvictim's time to verdict: {waited:.2f} s under a flood of {HEAVY} manifests x "
        f"{REPEATS} layers and {still_flooding} tiny images by another identity; "
        f"{ahead} flood jobs were queued ahead of it (first-in first-out would have run them "
        f"first), {behind} still queued when its verdict landed"
    )
    assert verdict(gk, digest) == "passed"
    assert behind >= BACKLOG // 2  # the flood was still waiting: fairness, not an empty queue
    assert waited < 10.0
    resp = victim.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
    heavy = gk.database.fetch(
        "SELECT state FROM verdicts WHERE repository LIKE 'flood/%' AND state != 'pending'"
    )
    assert {row["state"] for row in heavy} <= {"passed"}


def test_a_waiting_pull_puts_its_image_ahead_of_the_queue(
    registry: Registry, tmp_path: Path
) -> None:
    """One worker, five slow images of one identity: a pull of the last one waits, and its
    image is verified next, before the three queued ahead of it."""
    policies = [
        {"name": "slow", "repositories": ["busy/*"], "require": ["slow"], "hold_seconds": 60}
    ]
    slow = {"slow": {"plugin": f"{FAKES}:Slow"}}
    gk = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        extra_env={
            "GATEKEEPER_POLICIES": json.dumps(policies),
            "GATEKEEPER_VERIFIERS": json.dumps(slow),
            "GATEKEEPER_VERIFICATION__WORKERS": "1",
        },
    )
    try:
        with httpx.Client(base_url=gk.url, timeout=120) as http:
            digests = [
                push_image(
                    http, "busy/app", f"v{n}", [os.urandom(100)], image_config({"test.sleep": "1"})
                )[0]
                for n in range(5)
            ]
            resp = http.get("/v2/busy/app/manifests/v4", headers={"Accept": OCI_MANIFEST})
            states = [verdict(gk, d) for d in digests]
        assert resp.status_code == 200, resp.text
        assert states[4] == "passed"
        # it overtook the images queued before it: at least the last two of them still wait
        assert states[2:4] == ["pending", "pending"], states
    finally:
        gk.stop()
