"""Gating a public registry end to end (issue 20), with two real registries: ``public`` plays
Docker Hub (behind a front that can go down or rate-limit), ``cache`` runs in proxy mode
(``proxy: remoteurl:``) behind the gatekeeper, whose settings name the remote and give images
from it a policy of their own (``origins``).

A clean image passes on its first pull; one with a planted AWS key and one with a known
vulnerable package (real OSV records) are quarantined on their first pull and never served; an
admin's release lets one through; prefetch and the warm list verify before any pull; concurrent
first pulls share one verification and one read of each layer; a hold that runs out says when
to come back; the remote down or rate-limiting keeps cached verified images pullable and gives
uncached ones an error naming the remote.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from proxy.remote_status import TTL
from tests.support.clients import ClientError, Skopeo
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli, wait_state
from tests.support.ocihttp import OCI_MANIFEST
from tests.support.pullthrough import (
    RETRY_AFTER,
    PublicImage,
    Registries,
    manifest_of,
    publish,
    start_registries,
)
from tests.support.tap import Tap, layer_reads
from tests.support.testdata import OSV_PYPI

pytestmark = [pytest.mark.e2e]

ACCEPT = {"Accept": OCI_MANIFEST}
TOKEN = "pullthrough-admin-token"
DIST = Path("/usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info")
RECORDS = OSV_PYPI  # the real PyPI advisories the repository carries (tests/data/NOTICE.md)
ADVISORY = "PYSEC-2023-254"  # cryptography >= 3.1, < 41.0.6
WARM = "library/warm:1"
POLICIES = [
    {
        "name": "docker-hub",
        "repositories": ["*"],
        "origins": ["hub"],
        "require": ["inventory", "vulnerabilities", "secrets"],
    },
    {
        "name": "slow-remote",
        "repositories": ["*"],
        "origins": ["hub-slow"],
        "require": ["secrets", "slow"],
        "pending": "block",  # held only as long as the remote says (hub-slow: 2 s)
    },
]
VERIFIERS = {
    "inventory": {},
    "vulnerabilities": {},
    "secrets": {},
    "slow": {"plugin": "tests.fakes.verifiers:Slow", "options": {"cap_seconds": 30}},
}


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    started = start_registries(tmp_path_factory.mktemp("pullthrough"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def warm(registries: Registries) -> PublicImage:
    """In the warm list of the settings: pushed before the gatekeeper starts."""
    return publish(registries.public, "library/warm", "1", {"etc/motd": b"kept warm\n"})


@pytest.fixture(scope="module")
def gated(
    registries: Registries, warm: PublicImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gatekeeper, Tap]]:
    """The gatekeeper before the cache (through a tap that sees every read of it)."""
    tap = Tap(registries.cache.port)
    front = registries.front.url
    remotes = [
        {"name": "hub", "url": front, "repositories": ["*"], "hold_seconds": 120},
        {"name": "hub-slow", "url": front, "repositories": ["slowpoke/*"], "hold_seconds": 2},
    ]
    env = {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps(VERIFIERS),
        "GATEKEEPER_REMOTES": json.dumps(remotes),
        "GATEKEEPER_PREFETCH__IMAGES": json.dumps([WARM]),
        "GATEKEEPER_RESCAN__TICK": "0.5",
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
        "GATEKEEPER_VERIFICATION__WORKERS": "4",
        "GATEKEEPER_VERIFICATION__MAX_ATTEMPTS": "2",
        "GATEKEEPER_VERIFICATION__RETRY_BASE_SECONDS": "0.5",
    }
    gk = make_gatekeeper(tmp_path_factory.mktemp("gk"), tap.url, extra_env=env)
    imported = run_cli(gk, "advisories", "import", str(RECORDS))
    assert imported.returncode == 0, imported.stderr
    yield gk, tap
    gk.stop()
    tap.close()


@pytest.fixture
def skopeo(tmp_path: Path, gated: tuple[Gatekeeper, Tap]) -> Skopeo:
    return Skopeo(tmp_path / "skopeo", [gated[0].host])


def admin(gk: Gatekeeper) -> dict[str, str]:
    return {"GATEKEEPER_ADMIN_TOKEN": TOKEN, "GATEKEEPER_ADMIN_URL": gk.url}


def verdict(gk: Gatekeeper, image: PublicImage) -> dict[str, object]:
    rows = gk.database.fetch(
        "SELECT state, origin, policy, pushed FROM verdicts WHERE repository = :r AND digest = :d",
        {"r": image.repository, "d": image.digest},
    )
    assert len(rows) == 1, rows
    return dict(rows[0])


def served(gk: Gatekeeper, repository: str) -> list[dict[str, object]]:
    """Access-log rows of manifests or blobs of ``repository`` that left with a 200."""
    return gk.audit_rows(
        "repository = :r AND status = 200 AND action IN ('manifest.pull', 'blob.pull')",
        {"r": repository},
    )


def aws_credentials() -> bytes:
    key_id = "AKIA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)
    )
    secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    return f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n".encode()


def test_a_clean_image_passes_on_its_first_pull(
    gated: tuple[Gatekeeper, Tap], registries: Registries, skopeo: Skopeo, tmp_path: Path
) -> None:
    gk, _ = gated
    image = publish(registries.public, "library/clean", "1.0", {"etc/os-release": b"ID=test\n"})
    started = time.monotonic()
    skopeo.copy(f"docker://{gk.host}/{image.reference}", f"oci:{tmp_path / 'oci'}:pulled")
    assert time.monotonic() - started < 60
    assert verdict(gk, image) == {
        "state": "passed",
        "origin": "hub",
        "policy": "docker-hub",
        "pushed": False,
    }
    rows = gk.wait_audit(1, "repository = 'library/clean' AND action = 'manifest.pull'")
    assert rows[0]["decision"] == "allow" and rows[0]["status"] == 200
    jobs = gk.database.fetch("SELECT identity FROM jobs WHERE digest = :d", {"d": image.digest})
    assert [j["identity"] for j in jobs] == ["gatekeeper:first-pull"]


def test_a_planted_secret_is_quarantined_on_its_first_pull_and_never_served(
    gated: tuple[Gatekeeper, Tap], registries: Registries, skopeo: Skopeo, tmp_path: Path
) -> None:
    gk, _ = gated
    files = {"root/.aws/credentials": aws_credentials(), "etc/motd": b"hello\n"}
    image = publish(registries.public, "library/leaky", "1.0", files)
    with pytest.raises(ClientError) as refused:
        skopeo.copy(f"docker://{gk.host}/{image.reference}", f"oci:{tmp_path / 'oci'}:pulled")
    assert "quarantined" in refused.value.stderr and "secret.aws-access-key" in refused.value.stderr
    assert verdict(gk, image)["state"] == "quarantined"
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        assert manifest_of(http, image).status_code == 403
        by_digest = http.get(f"/v2/library/leaky/manifests/{image.digest}", headers=ACCEPT)
        assert by_digest.status_code == 403
        blob = http.get(f"/v2/library/leaky/blobs/{image.layer}")
        assert blob.status_code == 403 and blob.json()["errors"][0]["code"] == "DENIED"
    gk.wait_audit(4, "repository = 'library/leaky'")
    assert served(gk, "library/leaky") == []


@pytest.mark.testdata
@pytest.mark.skipif(not DIST.exists(), reason="needs Debian 12's python3-cryptography")
def test_a_known_vulnerable_package_is_quarantined_on_its_first_pull(
    gated: tuple[Gatekeeper, Tap], registries: Registries
) -> None:
    gk, _ = gated
    files = {
        f"usr/lib/python3/dist-packages/{DIST.name}/{item.name}": item.read_bytes()
        for item in DIST.iterdir()
        if item.is_file()
    }
    image = publish(registries.public, "library/vulnerable", "1.0", files)
    with httpx.Client(base_url=gk.url, timeout=180) as http:
        resp = manifest_of(http, image)
        assert resp.status_code == 403, resp.text
        message = resp.json()["errors"][0]["message"]
        assert ADVISORY in message and "quarantined" in message
        assert http.get(f"/v2/library/vulnerable/blobs/{image.layer}").status_code == 403
    assert verdict(gk, image)["state"] == "quarantined"
    assert served(gk, "library/vulnerable") == []


def test_an_admins_release_lets_a_quarantined_image_through(
    gated: tuple[Gatekeeper, Tap], registries: Registries, skopeo: Skopeo, tmp_path: Path
) -> None:
    gk, _ = gated
    image = publish(
        registries.public, "library/released", "1.0", {"x/.aws/credentials": aws_credentials()}
    )
    with httpx.Client(base_url=gk.url, timeout=180) as http:
        assert manifest_of(http, image).status_code == 403
    ref = f"{image.repository}@{image.digest}"
    done = run_cli(gk, "quarantine", "release", ref, "--reason", "a test key", env=admin(gk))
    assert done.returncode == 0, done.stderr
    skopeo.copy(f"docker://{gk.host}/{image.reference}", f"oci:{tmp_path / 'oci'}:pulled")
    assert verdict(gk, image)["state"] == "released"


def test_prefetch_verifies_before_any_pull(
    gated: tuple[Gatekeeper, Tap], registries: Registries
) -> None:
    gk, tap = gated
    good = publish(registries.public, "library/prefetched", "1.0", {"etc/motd": b"early\n"})
    bad = publish(
        registries.public, "library/prefetched", "bad", {"a/.aws/credentials": aws_credentials()}
    )
    done = run_cli(
        gk, "prefetch", good.reference, bad.reference, "library/nothing:1", env=admin(gk)
    )
    assert done.returncode == 1, done.stderr  # one is quarantined, one does not exist
    lines = done.stdout.splitlines()
    assert f"fetched library/prefetched:1.0 ({good.digest[:19]}, from hub): verifying" in lines
    assert any(line.startswith("library/prefetched:1.0: passed after") for line in lines)
    assert any(
        line.startswith("library/prefetched:bad: quarantined after") and "secret.aws" in line
        for line in lines
    ), lines
    assert any(line.startswith("could not fetch library/nothing:1:") for line in lines), lines
    assert lines[-1] == "3 images: 1 not fetched, 1 passed, 1 quarantined"
    assert verdict(gk, good)["state"] == "passed" and layer_reads(tap, good.layer)
    assert gk.audit_rows("repository = 'library/prefetched' AND action = 'manifest.pull'") == []
    (row,) = gk.wait_audit(1, "action = 'admin.prefetch'")
    assert row["status"] == 202 and row["identity"].startswith("admin-token")
    tap.clear()
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        started = time.monotonic()
        resp = manifest_of(http, good)
        assert resp.status_code == 200 and time.monotonic() - started < 5
        assert manifest_of(http, bad).status_code == 403
    assert layer_reads(tap, good.layer) == []  # nothing was verified again for the pull


def test_the_warm_list_is_verified_without_anyone_pulling(
    gated: tuple[Gatekeeper, Tap], warm: PublicImage
) -> None:
    gk, _ = gated
    assert wait_state(gk, warm.digest) == "passed"
    jobs = gk.database.fetch("SELECT identity FROM jobs WHERE digest = :d", {"d": warm.digest})
    assert {j["identity"] for j in jobs} == {"gatekeeper:prefetch"}
    assert gk.audit_rows("repository = 'library/warm' AND action = 'manifest.pull'") == []


def test_concurrent_first_pulls_share_one_verification_and_one_read(
    gated: tuple[Gatekeeper, Tap], registries: Registries
) -> None:
    """A large image pulled by five clients at once before anyone saw it: one job, each
    layer read once by the verification, every client served the same bytes."""
    gk, tap = gated
    big = secrets.token_bytes(24 * 1024 * 1024)  # incompressible: 24 MB on the wire
    image = publish(registries.public, "library/big", "1.0", {"opt/data.bin": big})
    tap.clear()

    def pull(_: int) -> httpx.Response:
        with httpx.Client(base_url=gk.url, timeout=180) as http:
            return manifest_of(http, image)

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(pull, range(5)))
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert {a.content for a in answers} == {image.manifest}
    jobs = gk.database.fetch("SELECT id FROM jobs WHERE digest = :d", {"d": image.digest})
    assert len(jobs) == 1
    assert len(layer_reads(tap, image.layer)) == 1


def test_a_hold_that_runs_out_says_when_to_try_again(
    gated: tuple[Gatekeeper, Tap], registries: Registries
) -> None:
    """Images of ``slowpoke/*`` come from the remote ``hub-slow`` (a hold of 2 s) and take 6 s
    to verify: the first pull is told to come back, with roughly when, and the second pull,
    meanwhile, waits on the same verification."""
    gk, _ = gated
    image = publish(
        registries.public, "slowpoke/app", "1.0", {"etc/motd": b"slow\n"}, {"test.sleep": "6"}
    )
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        started = time.monotonic()
        first = manifest_of(http, image)
        held = time.monotonic() - started
        assert first.status_code == 403, first.text
        assert 2 <= held < 6
        error = first.json()["errors"][0]
        assert error["code"] == "DENIED" and error["detail"]["state"] == "pending"
        assert error["detail"]["policy"] == "slow-remote"
        message = error["message"]
        assert message.startswith(f"{image.digest} is still being verified (policy slow-remote")
        assert "fetched from hub-slow" in message and "try again in about" in message
        wait = int(first.headers["Retry-After"])
        assert wait == error["detail"]["retry_after_seconds"] and 5 <= wait <= 60
        second = manifest_of(http, image)
        while second.status_code == 403 and time.monotonic() - started < 30:
            second = manifest_of(http, image)
        assert second.status_code == 200, second.text
    jobs = gk.database.fetch("SELECT id FROM jobs WHERE digest = :d", {"d": image.digest})
    assert len(jobs) == 1


def test_the_remote_down_keeps_cached_verified_images_and_names_itself_for_others(
    gated: tuple[Gatekeeper, Tap], registries: Registries, skopeo: Skopeo, tmp_path: Path
) -> None:
    gk, _ = gated
    cached = publish(registries.public, "library/cached", "1.0", {"etc/motd": b"cached\n"})
    never = publish(registries.public, "library/uncached", "1.0", {"etc/motd": b"later\n"})
    skopeo.copy(f"docker://{gk.host}/{cached.reference}", f"oci:{tmp_path / 'first'}:pulled")
    with registries.front.down():
        skopeo.copy(f"docker://{gk.host}/{cached.reference}", f"oci:{tmp_path / 'again'}:pulled")
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            resp = manifest_of(http, never)
            assert resp.status_code == 503, resp.text
            error = resp.json()["errors"][0]
            assert error["code"] == "UNAVAILABLE" and error["detail"]["remote"] == "hub"
            assert error["message"].startswith("remote hub (127.0.0.1:")
            assert "cannot be reached" in error["message"]
            assert "library/uncached:1.0 is not in the registry's cache" in error["message"]
            assert "images already fetched and verified are still served" in error["message"]
            head = http.head(f"/v2/library/uncached/manifests/{never.tag}")
            assert head.status_code == 503
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        assert manifest_of(http, never).status_code == 200  # back: fetched and verified


def test_a_remote_lost_during_a_verification_fails_it_and_says_where_from(
    gated: tuple[Gatekeeper, Tap], registries: Registries
) -> None:
    """The registry kept the manifest (a client asked it directly) but not the layers, and
    the remote goes down: the verification cannot read them, and rather than leave the image
    pending for ever the pull gets a failure verdict that names the remote."""
    gk, _ = gated
    image = publish(registries.public, "library/halfway", "1.0", {"etc/motd": b"halfway\n"})
    with httpx.Client(base_url=registries.cache.url, timeout=60) as direct:
        assert manifest_of(direct, image).status_code == 200  # the registry keeps the manifest
    with registries.front.down(), httpx.Client(base_url=gk.url, timeout=120) as http:
        resp = manifest_of(http, image)
    assert resp.status_code == 403, resp.text
    message = resp.json()["errors"][0]["message"]
    assert "is quarantined: verification could not complete" in message
    assert "(the registry fetches library/halfway from remote hub)" in message
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        done = run_cli(gk, "quarantine", "rescan", f"library/halfway@{image.digest}", env=admin(gk))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while manifest_of(http, image).status_code != 200:
            assert time.monotonic() < deadline, "the rescan did not replace the failure verdict"
            time.sleep(0.5)


def test_a_rate_limiting_remote_is_named_with_its_retry_after(
    gated: tuple[Gatekeeper, Tap], registries: Registries, skopeo: Skopeo, tmp_path: Path
) -> None:
    gk, _ = gated
    time.sleep(TTL + 0.5)  # what an earlier test's outage taught the gatekeeper is forgotten
    cached = publish(registries.public, "library/popular", "1.0", {"etc/motd": b"popular\n"})
    limited = publish(registries.public, "library/unlucky", "1.0", {"etc/motd": b"unlucky\n"})
    skopeo.copy(f"docker://{gk.host}/{cached.reference}", f"oci:{tmp_path / 'first'}:pulled")
    with registries.front.rate_limiting():
        skopeo.copy(f"docker://{gk.host}/{cached.reference}", f"oci:{tmp_path / 'again'}:pulled")
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            resp = manifest_of(http, limited)
        assert resp.status_code == 429, resp.text
        assert resp.headers["Retry-After"] == str(RETRY_AFTER)
        error = resp.json()["errors"][0]
        assert error["code"] == "TOOMANYREQUESTS" and error["detail"]["remote"] == "hub"
        assert error["message"].startswith("remote hub (127.0.0.1:")
        assert "is rate limiting pulls" in error["message"]
        assert f"try again in about {RETRY_AFTER} s" in error["message"]
        with pytest.raises(ClientError) as refused:
            skopeo.copy(f"docker://{gk.host}/{limited.reference}", f"oci:{tmp_path / 'x'}:x")
        assert "remote hub" in refused.value.stderr and "rate limiting" in refused.value.stderr
    row = gk.wait_audit(1, "repository = 'library/unlucky' AND status = 429")[0]
    assert "rate limiting" in str(row["reason"]) and row["error_code"] == "TOOMANYREQUESTS"
