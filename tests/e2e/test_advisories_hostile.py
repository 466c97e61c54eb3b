"""Hostile advisory data end to end (issue 22, items 6-8): a real gatekeeper in front of the
real registry, ``gatekeeper advisories import`` run as its own process, and hostile mirrors
served over real HTTP by a local server.

6. Records with a field of the wrong type are skipped, each named with its field, and the rest
   are imported (an image is quarantined by a good record of the same source); in a mirror
   sync a bad archive is one failed URL, counted, and the next URLs are still fetched, each
   once (the next sync time is set, nothing is downloaded again on every tick).
7. A 700 MB zip member and a 28 MB record with 200,000 ``affected`` entries are skipped at the
   per-record cap, reading no further than it; a record just under the cap is imported. The
   peak memory of the import process (and of the syncing gatekeeper) is measured by the kernel
   (``VmHWM``, tests/support/peak_memory.py) against a stated bound.
8. A mirror dripping one byte every 1.5 s is abandoned at ``download_deadline``; meanwhile the
   scheduler's other work goes on: another mirror URL is imported, and a re-verification run
   started after the drip began is queued and finished.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.database import as_datetime
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli, wait_state
from tests.support.layers import config_for, layer
from tests.support.ocihttp import OCI_MANIFEST, image_config, push_image
from tests.support.osvdata import (
    BAD_FIELDS,
    BAD_RECORDS,
    MiB,
    add_bomb,
    huge_record,
    real,
    write_bad_records,
    write_zip,
)
from tests.support.osvmirror import OsvMirror
from tests.support.peak_memory import peak_rss, reported
from tests.support.registry import Registry
from tests.support.testdata import OSV
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.testdata,
]

DIST = Path("/usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info")
ADVISORY = "PYSEC-2023-254"  # cryptography >= 3.1, < 41.0.6; CVSS 7.5 (HIGH)
POLICIES = [
    {
        "name": "vulns",
        "repositories": ["adv/*"],
        "require": ["inventory", "vulnerabilities"],
        "severity_threshold": "high",
    },
    {"name": "rest", "repositories": ["*"], "mode": "warn", "require": ["config-sanity"]},
]
VERIFIERS: dict[str, dict[str, str]] = {"config-sanity": {}, "inventory": {}, "vulnerabilities": {}}

CLI_PEAK_BOUND = 256 * MiB
"""The import process: the interpreter and its libraries take about 90 MiB here; one batch of
records (about 1 MiB of JSON) and one record at the 4 MiB cap, parsed, add at most about
130 MiB. Before the caps the zip bomb took 1.47 GB and the huge record 968 MB."""
SERVER_PEAK_BOUND = 384 * MiB
"""The serving gatekeeper (aiohttp, verifiers, workers) syncing the zip bomb."""
GO_RECORDS = ("GO-2023-1751", "GO-2023-1752", "GO-2023-1753", "GO-2023-1878", "GO-2023-1987")
PYPI_RECORDS = ("PYSEC-2023-117", "PYSEC-2023-135", "PYSEC-2023-192")


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    env = {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps(VERIFIERS),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("adv"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


@pytest.fixture(scope="module")
def bomb_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real Go records, one bad record, and a 700 MB member that deflates to ~700 KB."""
    path = tmp_path_factory.mktemp("bomb") / "all.zip"
    members = {f"{i}.json": real(f"go/{i}.json") for i in GO_RECORDS[:2]}
    members["BAD-ALIASES.json"] = json.dumps(BAD_RECORDS["BAD-ALIASES"]).encode()
    write_zip(path, members)
    add_bomb(path, "BOMB-1.json", 700 * MiB)
    assert path.stat().st_size < 2 * MiB
    return path


def pypi_zip(path: Path) -> Path:
    return write_zip(path, {f"{n}.json": real(f"pypi/{n}.json") for n in PYPI_RECORDS})


def cli(gk: Gatekeeper, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``gatekeeper ARGS`` in its own process, on the gatekeeper's settings."""
    return run_cli(gk, *args, timeout=timeout)


def measured(gk: Gatekeeper, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """``gatekeeper ARGS`` in its own process, and that process's peak resident memory."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.peak_memory", *args],
        env=gk.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    peak = reported(done.stderr)
    print(f"peak RSS of gatekeeper {' '.join(args[:2])}: {peak / MiB:.0f} MiB")
    return done, peak


def stored(gk: Gatekeeper, ids: tuple[str, ...] | list[str]) -> set[str]:
    rows = gk.database.fetch("SELECT id FROM advisories")
    return {r["id"] for r in rows} & set(ids)


def imported(gk: Gatekeeper, url: str) -> int | None:
    """The data version the last sync of ``url`` imported (None: none yet)."""
    rows = gk.database.fetch(
        "SELECT data_version FROM advisory_mirrors WHERE display_url = :u", {"u": url}
    )
    return rows[0]["data_version"] if rows else None


# -- 6: bad records --------------------------------------------------------------------------


@pytest.mark.skipif(not DIST.exists(), reason="needs Debian 12's python3-cryptography")
def test_import_skips_bad_records_naming_them_and_imports_the_rest(
    gk: Gatekeeper, tmp_path: Path
) -> None:
    data, diff_id = layer(
        lambda tar: tar.add(str(DIST), f"usr/lib/python3/dist-packages/{DIST.name}")
    )
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, _ = push_image(http, "adv/app", "v1", [data], config_for([(data, diff_id)]))
        assert wait_state(gk, digest) == "passed"  # no advisories yet

        source = tmp_path / "osv"
        shutil.copytree(OSV / "pypi", source)
        bad = write_bad_records(source / "bad")
        done = cli(gk, "advisories", "import", str(source))
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "10 added" in done.stdout and f"{len(bad)} rejected" in done.stdout, done.stdout
        for name, field in BAD_FIELDS.items():
            assert f"skipped {source}/bad/{name}.json: {name}: {field}: " in done.stderr
        assert not stored(gk, list(BAD_RECORDS))

        # The good records of the same source took effect: the image is quarantined by one.
        wait_until(lambda: wait_state(gk, digest) == "quarantined", 60, "the quarantine")
        resp = http.get(f"/v2/adv/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert resp.status_code == 403, resp.text
        assert ADVISORY in resp.json()["errors"][0]["message"]


# -- 7: memory ---------------------------------------------------------------------------------


def test_a_zip_bomb_member_is_skipped_in_bounded_memory(gk: Gatekeeper, bomb_zip: Path) -> None:
    done, peak = measured(gk, "advisories", "import", str(bomb_zip))
    assert done.returncode == 0, done.stderr
    assert "2 added" in done.stdout and "2 rejected" in done.stdout, done.stdout
    assert f"skipped {bomb_zip}:BOMB-1.json: " in done.stderr
    assert "over max_record_bytes (4194304)" in done.stderr
    assert f"skipped {bomb_zip}:BAD-ALIASES.json: BAD-ALIASES: aliases: " in done.stderr
    assert stored(gk, [*GO_RECORDS, "BOMB-1"]) == set(GO_RECORDS[:2])
    assert peak < CLI_PEAK_BOUND, f"peak RSS {peak / MiB:.0f} MiB"


def test_a_huge_record_is_skipped_and_a_large_one_imported_in_bounded_memory(
    gk: Gatekeeper, tmp_path: Path
) -> None:
    source = tmp_path / "osv"
    source.mkdir()
    (source / "HUGE-1.json").write_bytes(huge := huge_record("HUGE-1", 200_000))
    large = huge_record("LARGE-1", 28_000)  # just under the 4 MiB cap: imported
    assert len(huge) > 20 * MiB and 3 * MiB < len(large) < 4 * MiB
    (source / "LARGE-1.json").write_bytes(large)
    for name in GO_RECORDS[2:]:
        (source / f"{name}.json").write_bytes(real(f"go/{name}.json"))

    started = time.monotonic()
    done, peak = measured(gk, "advisories", "import", str(source))
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "4 added" in done.stdout and "1 rejected" in done.stdout, done.stdout
    assert f"skipped {source}/HUGE-1.json: {len(huge)} bytes, over max_record_bytes" in done.stderr
    assert stored(gk, [*GO_RECORDS[2:], "HUGE-1", "LARGE-1"]) == {*GO_RECORDS[2:], "LARGE-1"}
    rows = gk.database.fetch(
        "SELECT count(*) AS n FROM advisory_packages WHERE advisory_id = 'LARGE-1'"
    )
    assert rows == [{"n": 28_000}]
    assert peak < CLI_PEAK_BOUND, f"peak RSS {peak / MiB:.0f} MiB"
    print(f"imported in {seconds:.1f}s")
    assert seconds < 60, f"{seconds:.1f}s (the huge record alone took 68 s before the cap)"


# -- 6 and 7 in a mirror sync --------------------------------------------------------------------


def test_a_sync_skips_bad_records_fails_a_bad_archive_and_fetches_every_url_once(
    registry: Registry, tmp_path: Path, bomb_zip: Path
) -> None:
    mirror = OsvMirror()
    bad_only = write_zip(
        tmp_path / "bad.zip", {f"{n}.json": json.dumps(r).encode() for n, r in BAD_RECORDS.items()}
    )
    good = pypi_zip(tmp_path / "good.zip")
    urls = [
        mirror.serve("/Go/all.zip", bomb_zip.read_bytes()),
        mirror.serve("/Bad/all.zip", bad_only.read_bytes()),
        mirror.serve("/PyPI/all.zip", good.read_bytes()),
    ]
    gk = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        extra_env={
            "GATEKEEPER_ADVISORIES__MIRROR_URLS": json.dumps(urls),
            "GATEKEEPER_ADVISORIES__SYNC_INTERVAL": "1h",
            "GATEKEEPER_RESCAN__TICK": "0.2",
        },
    )
    try:
        db = gk.database
        wait_until(lambda: len(db.fetch("SELECT url_key FROM advisory_mirrors")) == 3, 60, "syncs")
        rows = {r["display_url"]: r for r in db.fetch("SELECT * FROM advisory_mirrors")}
        assert rows[urls[0]]["data_version"] and rows[urls[0]]["last_error"] is None
        assert rows[urls[2]]["data_version"] and rows[urls[2]]["last_error"] is None
        assert rows[urls[1]]["failures"] == 1 and not rows[urls[1]]["data_version"]
        reason = f"no valid OSV record in it ({len(BAD_RECORDS)} rejected)"
        assert reason in rows[urls[1]]["last_error"]
        assert stored(gk, [*GO_RECORDS, *PYPI_RECORDS, "BOMB-1", *BAD_RECORDS]) == {
            *GO_RECORDS[:2],
            *PYPI_RECORDS,
        }
        # Counted as each sync ends, a moment after its row is written.
        counted = (
            'gatekeeper_advisory_syncs_total{result="imported"} 2.0',
            'gatekeeper_advisory_syncs_total{result="failed"} 1.0',
        )
        wait_until(lambda: counted_all(gk.url, counted), 10, "the sync counters")
        log = gk.log_path.read_text()
        assert "skipping OSV record BOMB-1.json in" in log and "max_record_bytes" in log
        assert "skipping OSV record BAD-ALIASES.json in" in log
        assert "Traceback" not in log

        # Ten more ticks: the next sync is an hour away, nothing is downloaded again.
        time.sleep(2)
        assert [mirror.routes[p].requests for p in ("/Go/all.zip", "/Bad/all.zip")] == [1, 1]
        assert mirror.routes["/PyPI/all.zip"].requests == 1
        (mark,) = db.fetch("SELECT due_at FROM scheduler_marks WHERE name = 'advisory-sync'")
        checked = max(as_datetime(r["checked_at"]) for r in rows.values())
        assert (as_datetime(mark["due_at"]) - checked).total_seconds() > 3000
        peak = peak_rss(gk.process.pid)  # type: ignore[union-attr]
        print(f"peak RSS of the syncing gatekeeper: {peak / MiB:.0f} MiB")
        assert peak < SERVER_PEAK_BOUND
    finally:
        gk.stop()
        mirror.close()


def counted_all(url: str, lines: tuple[str, ...]) -> bool:
    metrics = httpx.get(f"{url}/metrics").text
    return all(line in metrics for line in lines)


# -- 8: a dripping mirror ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_dripping_mirror_is_abandoned_and_blocks_nothing_meanwhile(
    registry: Registry, tmp_path: Path
) -> None:
    deadline = 30.0  # long enough for the run below on a loaded machine
    mirror = OsvMirror()
    good = pypi_zip(tmp_path / "good.zip")
    drip = mirror.serve("/Go/all.zip", good.read_bytes(), drip_seconds=1.5)
    fast = mirror.serve("/PyPI/all.zip", good.read_bytes())
    gk = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        extra_env={
            "GATEKEEPER_ADVISORIES__MIRROR_URLS": json.dumps([drip, fast]),
            "GATEKEEPER_ADVISORIES__SYNC_INTERVAL": "1h",
            "GATEKEEPER_ADVISORIES__TIMEOUT_SECONDS": "5",  # > 1.5 s: the drip never trips it
            "GATEKEEPER_ADVISORIES__DOWNLOAD_DEADLINE": f"{deadline}s",
            "GATEKEEPER_RESCAN__INTERVAL": "off",
            "GATEKEEPER_RESCAN__TICK": "0.2",
        },
    )
    dripping = mirror.routes["/Go/all.zip"]
    try:
        db = gk.database
        wait_until(lambda: dripping.dripping == 1, 60, "the dripping download")
        began = time.monotonic()

        # A re-verification run started now is queued and finished while the drip goes on.
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            for n in range(3):
                push_image(http, f"drip/app{n}", "v1", [bytes([n]) * 64], image_config())
        done = cli(gk, "rescan", "--repository", "drip/*", "--spread", "0", "--wait", timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "queued 3/3 images, 3/3 verifications finished" in done.stdout.splitlines()[-1]
        # Causal, not timed (the machine may be slow): when the run has finished, the download
        # is still going and has not been abandoned yet.
        assert dripping.dripping == 1, "the run finished only after the dripping download"
        row = "SELECT failures FROM advisory_mirrors WHERE display_url = :u"
        assert [r["failures"] for r in db.fetch(row, {"u": drip})] in ([], [0])

        # And the other mirror URL was imported meanwhile.
        wait_until(lambda: imported(gk, fast), 10, "the other mirror URL")
        assert dripping.dripping == 1

        # The drip is abandoned at the deadline: a failed sync, counted, not retried per tick.
        row = "SELECT failures, last_error FROM advisory_mirrors WHERE display_url = :u"
        failed = wait_until(lambda: db.fetch(row, {"u": drip}), deadline + 10, "the deadline")[0]
        assert failed["failures"] == 1
        assert f"download_deadline ({deadline:g}s)" in failed["last_error"]
        assert time.monotonic() - began < deadline + 5
        # The mirror notices at its next byte or two that the gatekeeper hung up.
        wait_until(lambda: dripping.dripping == 0, 10, "the gatekeeper to hang up")
        time.sleep(1)  # more ticks
        assert dripping.requests == 1 and mirror.routes["/PyPI/all.zip"].requests == 1
        metrics = httpx.get(f"{gk.url}/metrics").text
        assert 'gatekeeper_advisory_syncs_total{result="failed"} 1.0' in metrics
    finally:
        gk.stop()
        mirror.close()
