"""``gatekeeper serve --workers 2`` through the real registry: two serving processes on one
port and a verifying one under a supervising parent (``proxy/workers.py``); the gate, the
access log's one row per request and the metrics as with one process; a serving process
stopped is replaced without a failed request; the parent's stop stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.audited import assert_one_row_each, audited_client
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, wait_state
from tests.support.ocihttp import OCI_MANIFEST, image_config, push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

ACCEPT = {"Accept": OCI_MANIFEST}
POLICIES = [
    {
        "name": "workers",
        "repositories": ["workers/*"],
        "require": ["config-sanity"],
        "pending": "hold",
        "hold_seconds": 30,
    }
]


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    started = make_gatekeeper(
        tmp_path_factory.mktemp("workers"),
        registry.url,
        storage_root=registry.storage_root,
        extra_env={
            "GATEKEEPER_POLICIES": json.dumps(POLICIES),
            "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}}),
            # The verifying process hears of a job pushed to a serving one by a wake-up
            # (``services.wakeups``), not by its timer: make the timer too slow to pass for it.
            "GATEKEEPER_VERIFICATION__POLL_SECONDS": "60",
        },
        start=False,
    )
    started.extra_args = ["--workers", "2"]
    started.start()
    yield started
    started.stop()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def roles(gk: Gatekeeper) -> dict[str, list[int]]:
    """The parent's children by role, read from its log ("started serve process 123")."""
    found: dict[str, list[int]] = {"serve": [], "worker": []}
    live = set(children(gk.process.pid)) if gk.process else set()
    for role, pid in re.findall(r"started (serve|worker) process (\d+)", gk.log_path.read_text()):
        if int(pid) in live:
            found[role].append(int(pid))
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_two_serving_processes_and_a_verifier(gk: Gatekeeper) -> None:
    wait_for(lambda: len(roles(gk)["serve"]) == 2 and len(roles(gk)["worker"]) == 1)
    assert len(children(gk.process.pid)) == 3  # type: ignore[union-attr]


def test_verdicts_gate_and_every_request_has_its_row(gk: Gatekeeper) -> None:
    """Pushes verified by the verifying process, woken by the serving process that queued
    the job (its own timer is a minute); pulls over both serving processes (many connections
    at once) gated by its verdicts, one access-log row each."""
    http, recorder = audited_client(gk)
    with http:
        good, _ = push_image(http, "workers/app", "good", [os.urandom(2048)])
        bad, _ = push_image(http, "workers/app", "bad", [os.urandom(2048)], image_config(layers=2))
    assert wait_state(gk, good, timeout=20) == "passed"
    assert wait_state(gk, bad, timeout=20) == "quarantined"

    def pull(n: int) -> tuple[int, int]:
        with httpx.Client(base_url=gk.url, timeout=60, event_hooks=http.event_hooks) as client:
            ok = client.get(f"/v2/workers/app/manifests/{good}", headers=ACCEPT).status_code
            no = client.get(f"/v2/workers/app/manifests/{bad}", headers=ACCEPT).status_code
        return ok, no

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(pull, range(64)))
    assert set(answers) == {(200, 403)}
    assert_one_row_each(gk, recorder)


def test_metrics_are_summed_over_the_processes(gk: Gatekeeper) -> None:
    def served() -> float:
        text = httpx.get(f"{gk.url}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gatekeeper_requests_total{") and 'action="api.version"' in line
        )

    before = served()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: httpx.get(f"{gk.url}/v2/").status_code, range(40)))
    assert set(statuses) == {200}
    # Whichever process answers the scrape counts every process's requests.
    wait_for(lambda: served() - before >= 40, timeout=10)
    assert served() - before == 40


def test_a_stopped_serving_process_is_replaced_without_failures(gk: Gatekeeper) -> None:
    victim = roles(gk)["serve"][0]
    failures: list[int] = []
    stop = False

    def keep_pulling() -> int:
        count = 0
        while not stop:
            with httpx.Client(base_url=gk.url, timeout=30) as client:
                status = client.get("/v2/").status_code
            if status != 200:
                failures.append(status)
            count += 1
        return count

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(keep_pulling) for _ in range(4)]
        time.sleep(0.5)
        os.kill(victim, signal.SIGTERM)
        wait_for(lambda: victim not in roles(gk)["serve"] and len(roles(gk)["serve"]) == 2)
        time.sleep(0.5)
        stop = True
        counted = sum(f.result() for f in running)
    assert failures == [] and counted > 0
    assert "python" in command_of(roles(gk)["serve"][-1])


def test_the_parent_stops_every_process(gk: Gatekeeper) -> None:
    """Last: it stops the gatekeeper."""
    assert gk.process is not None
    family = children(gk.process.pid)
    gk.process.send_signal(signal.SIGTERM)
    assert gk.process.wait(30) == 0
    for pid in family:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    gk.process = None
