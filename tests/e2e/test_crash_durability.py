"""``kill -9`` under a push-and-pull load loses no access-log row.

Clients push blobs and manifests and pull them back, through a gatekeeper whose access log is
batched every 5 s (so nearly every row is still waiting for its batch when the kill comes); each
client keeps the ``X-Request-Id`` of every answer whose headers it received, complete or cut
short by the kill. The gatekeeper is killed at a random moment, restarted, loaded and killed
again, and restarted: every one of those request ids has exactly one row.
"""

from __future__ import annotations

import collections
import functools
import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, image_manifest
from tests.support.registry import Registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CLIENTS = 6
ROUNDS = 2


class Load:
    """Client threads pushing and pulling until the gatekeeper dies under them."""

    def __init__(self, gk: Gatekeeper, round_: int) -> None:
        self.gk = gk
        self.round = round_
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive(), "a client did not notice the kill"

    def _keep(self, response: httpx.Response) -> None:
        request_id = response.headers.get("X-Request-Id")
        if request_id:
            with self.lock:
                self.seen.append(request_id)

    def _send(self, http: httpx.Client, method: str, url: str, **kwargs: object) -> httpx.Response:
        """One request; its id is kept as soon as its headers arrive (the body may never)."""
        with http.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
            self._keep(response)
            response.read()
            return response

    def _client(self, n: int) -> None:
        repo = f"load/r{self.round}c{n}"
        layer = os.urandom(512 * 1024 + n)
        try:
            with httpx.Client(base_url=self.gk.url, timeout=30) as http:
                for i in range(10_000):
                    self._push_and_pull(http, repo, f"v{i}", layer)
        except (httpx.TransportError, OSError):
            return  # the gatekeeper was killed

    def _push_and_pull(self, http: httpx.Client, repo: str, tag: str, layer: bytes) -> None:
        config = image_config({"tag": tag}, layers=1)
        for blob in (config, layer):
            start = self._send(http, "POST", f"/v2/{repo}/blobs/uploads/")
            location = start.headers["Location"]
            sep = "&" if "?" in location else "?"
            self._send(
                http,
                "PUT",
                f"{location}{sep}digest={digest_of(blob)}",
                content=blob,
                headers={"Content-Type": "application/octet-stream"},
            )
        manifest = image_manifest(config, [layer])
        self._send(
            http,
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        self._send(http, "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        self._send(http, "HEAD", f"/v2/{repo}/blobs/{digest_of(layer)}")
        self._send(http, "GET", f"/v2/{repo}/blobs/{digest_of(layer)}")


def busy(load: Load) -> bool:
    """Enough requests answered that a kill lands among many in flight."""
    return len(load.seen) > 20


def test_sigkill_under_load_loses_no_access_log_row(registry: Registry, tmp_path: Path) -> None:
    gk = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        # Rows wait for their batch far longer than the kill takes: only the spool has them.
        extra_env={"GATEKEEPER_AUDIT__FLUSH_INTERVAL_SECONDS": "5"},
    )
    seen: list[str] = []
    rng = random.Random()
    try:
        for round_ in range(ROUNDS):
            load = Load(gk, round_)
            load.start()
            # Enough traffic first (however slow the machine), then the kill at a random moment.
            wait_until(functools.partial(busy, load), 60, f"round {round_}: load")
            time.sleep(rng.uniform(0.0, 2.5))
            gk.stop(signal.SIGKILL)
            load.join()
            assert len(load.seen) > 20, f"round {round_}: too little load ({len(load.seen)})"
            seen += load.seen
            gk.start()  # replays the dead process's spool before it serves
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            after = http.get("/v2/")
        last = after.headers["X-Request-Id"]
        seen.append(last)
        assert gk.wait_audit(1, "request_id = :id", {"id": last}, timeout=30), "no last row"
        rows = gk.audit_rows()
        stored = [row["request_id"] for row in rows]
        missing = set(seen) - set(stored)
        assert not missing, f"{len(missing)} of {len(seen)} answered requests have no row"
        assert len(stored) == len(set(stored)), "a request has two rows"
        cut_short = [r for r in rows if "stopped before this answer" in (r["reason"] or "")]
        # Not every kill lands mid-answer; when one does, its row says so. A row says so only
        # for what was in flight at a kill: each client has one request at a time, in a
        # repository of its own per round, so at most one such row per repository. (Its id
        # need not be one a client saw: the row begins before the answer's headers leave.)
        per_repository = collections.Counter(r["repository"] for r in cut_short)
        clients = {f"load/r{round_}c{n}" for round_ in range(ROUNDS) for n in range(CLIENTS)}
        assert set(per_repository) <= clients, per_repository
        assert max(per_repository.values(), default=0) <= 1, per_repository
    finally:
        gk.stop()
