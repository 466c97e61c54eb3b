"""The load test's two verdicts, zero errors and one access-log row per request, at toy scale.

``bench.load_test`` runs for a minute with 220 clients; here the same generator and the same
checker run for seconds against a real registry and gatekeeper, and then each verdict is shown
able to fail: failing requests are counted as errors, and rows dropped, doubled or altered are
reported by the checker (on the real rows of the run, and on hand-made ones).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.load_test import (
    Options,
    access_rows,
    drive,
    first_pulls,
    quiet_mark,
    seed,
    wait_rows,
)
from bench.logcheck import check_log
from bench.targets import GATEKEEPER_ENV
from bench.traffic import BLOB_PULL, MANIFEST_PULL, PullImage, Sent
from tests.support.benches import run_bench
from tests.support.gatekeeper import make_gatekeeper
from tests.support.registry import Registry

pytestmark = [pytest.mark.e2e]

SMOKE = Options(
    duration=2.0,
    pullers=8,
    pushers=2,
    processes=1,
    images=2,
    blob_kib=16,
    push_kib=8,
    max_requests=5000,
    database="sqlite",
    workers=2,
    storage="mounted",
    keep_workdir=False,
    results_dir=None,
)


@pytest.mark.parametrize("storage", ["mounted", "streamed"])
def test_mixed_load_has_no_errors_and_one_row_per_request(
    registry: Registry, tmp_path: Path, storage: str
) -> None:
    # Two serving processes and a verifying one, as the bench's --workers 2 runs it; with the
    # registry's storage mounted (manifests from its files, blobs by sendfile) or without.
    env = {**GATEKEEPER_ENV, "GATEKEEPER_WORKERS": str(SMOKE.workers)}
    gatekeeper = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        storage_root=registry.storage_root if storage == "mounted" else None,
        extra_env=env,
    )
    try:
        images = seed(registry.url, SMOKE.images, SMOKE.blob_kib << 10)
        first_pulls(gatekeeper.url, images)
        rows = access_rows(gatekeeper)
        before = quiet_mark(rows)
        stats, sent = drive(gatekeeper.url, images, SMOKE, "bench/smoke")
        logged = wait_rows(rows, before, len(sent))

        assert stats.errors == 0, stats.error_examples
        assert {item.kind for item in sent} >= {MANIFEST_PULL, BLOB_PULL, "blob.upload"}
        assert stats.kinds["manifest.push"].requests > 0, "no pusher finished an image"
        check = check_log(sent, logged)
        assert check.ok, check.describe()
        assert check.requests == len(sent) == len(logged)

        # The same real rows, tampered with: each change is caught and named.
        dropped, doubled, altered = logged[0], logged[1], {**logged[2], "status": 599}
        tampered = [altered, doubled, *logged[1:2], *logged[3:]]
        broken = check_log(sent, tampered)
        assert not broken.ok
        assert len(broken.missing) == 1 and dropped["request_id"] in broken.missing[0]
        assert len(broken.duplicated) == 1 and doubled["request_id"] in broken.duplicated[0]
        assert len(broken.mismatched) == 1 and "-> 599" in broken.mismatched[0]

        # Requests the gatekeeper refuses are errors of the run, and still one row each.
        absent = PullImage("bench/absent", "nope", b"", "sha256:" + "0" * 64, 0)
        refused = replace(SMOKE, duration=1.0, pullers=2, pushers=0)
        before = quiet_mark(rows)
        stats, sent = drive(gatekeeper.url, (absent,), refused, "bench/smoke-refused")
        assert stats.errors == len(sent) > 0
        assert all(item.status in (403, 404) for item in sent), {i.status for i in sent}
        assert check_log(sent, wait_rows(rows, before, len(sent))).ok
    finally:
        gatekeeper.stop()


def _sent(request_id: str | None, status: int = 200) -> Sent:
    return Sent(MANIFEST_PULL, "GET", "/v2/a/manifests/v1", status, request_id, 0.01, 10, None)


def _row(request_id: str, status: int = 200, path: str = "/v2/a/manifests/v1") -> dict[str, object]:
    return {"request_id": request_id, "method": "GET", "path": path, "status": status}


def test_checker_names_each_kind_of_mismatch() -> None:
    sent = [_sent("a"), _sent("b"), _sent("c"), _sent("d", 404), _sent(None), _sent("e", 0)]
    rows = [_row("a"), _row("b"), _row("b"), _row("d", 200), _row("zz")]

    check = check_log(sent, rows)

    assert not check.ok
    assert check.missing == ("GET /v2/a/manifests/v1 -> 200 [c]",)
    assert check.duplicated == ("GET /v2/a/manifests/v1 -> 200 [b] x2",)
    assert check.mismatched == (
        "GET /v2/a/manifests/v1 -> 404 [d]: row says GET /v2/a/manifests/v1 -> 200",
    )
    assert check.without_id == ("GET /v2/a/manifests/v1 -> 200",)
    assert check.unexplained == ("GET /v2/a/manifests/v1 -> 200 [zz]",)
    assert check.requests == 5, "a request that got no answer (status 0) needs no row"
    assert "1 requests without a row" in check.describe()


def test_checker_accepts_rows_whose_path_carries_a_query() -> None:
    rows = [_row("a", path="/v2/a/manifests/v1?x=1")]
    assert check_log([_sent("a")], rows).ok


@pytest.mark.slow
@pytest.mark.own_database(reason="runs bench.load_test, which uses SQLite whatever --db says")
def test_load_test_command_runs(tmp_path: Path) -> None:
    """The entry point end to end at toy size: both targets, the check, the JSON."""
    done = run_bench(
        "bench.load_test",
        "--duration=2",
        "--pullers=4",
        "--pushers=1",
        "--images=1",
        "--blob-kib=8",
        f"--results-dir={tmp_path}",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "exactly one matching row per request" in done.stdout
    assert "manifest.pull" in done.stdout and "direct" in done.stdout
    assert len(list(tmp_path.glob("load-test-*.json"))) == 1
