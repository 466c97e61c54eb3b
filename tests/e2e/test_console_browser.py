"""The web console end to end, in a real headless Chromium with JavaScript off, against a real
gatekeeper in front of the real registry (issue 14's acceptance).

An image pushed with skopeo carries a GitHub token in a layer and is quarantined by the
``secrets`` verifier. A team admin signs in, finds it in the queue, reads the finding on its
page (the token itself appears nowhere on the page), releases it with a reason; skopeo then
pulls it, and the access-log page shows the release and the pull. A pull-only user is refused,
a form posted without its CSRF token is refused 403, and a disabled user's session stops at its
next request. Every page is checked for headings, landmarks, labels and keyboard order, and
photographed (the screenshots are written under the test's temporary directory).
"""

from __future__ import annotations

import io
import json
import secrets
import string
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.browser import Screenshots, check_accessibility, chromium, require_chromium
from tests.support.clients import Skopeo
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli, wait_state
from tests.support.images import MEDIA_TYPE_LAYER_GZIP, Layer, OciLayout, Platform
from tests.support.layers import layer
from tests.support.registry import Registry
from tests.support.vex import document, statement

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPOSITORY = "console/app"
POLICIES = [
    {
        "name": "console",
        "repositories": ["console/*"],
        "require": ["config-sanity", "secrets"],
        "severity_threshold": "high",
    }
]
GRANTS = {
    "rita": ["console/*=admin"],
    "ci": ["*=pull,push"],
    "paul": ["*=pull"],
    "dora": ["*=auditor"],
}
TOKEN = "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
"""The planted secret, made fresh for this run: it must appear nowhere on the console."""


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    require_chromium()
    env = {
        "GATEKEEPER_AUTH__ENABLED": "true",
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}, "secrets": {}}),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("console"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


@pytest.fixture(scope="module")
def passwords(gk: Gatekeeper) -> dict[str, str]:
    made = {}
    for name, grants in GRANTS.items():
        done = run_cli(gk, "users", "create", name, *[a for g in grants for a in ("--grant", g)])
        assert done.returncode == 0, done.stderr
        made[name] = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    return made


@pytest.fixture(scope="module")
def skopeo(
    gk: Gatekeeper, passwords: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Skopeo:
    client = Skopeo(tmp_path_factory.mktemp("skopeo"), [gk.host])
    client.login(gk.host, "ci", passwords["ci"])
    return client


@pytest.fixture(scope="module")
def quarantined(gk: Gatekeeper, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The digest of an image with a GitHub token in its second layer, pushed with skopeo."""
    layout = OciLayout(tmp_path_factory.mktemp("layout"))

    def base(tar: tarfile.TarFile) -> None:
        _add(tar, "etc/os-release", b"ID=console-test\n")

    def leak(tar: tarfile.TarFile) -> None:
        _add(tar, "app/deploy.sh", f"#!/bin/sh\nexport GH={TOKEN}\n".encode())

    layers = []
    for build in (base, leak):
        data, diff_id = layer(build)
        layers.append(Layer(layout.add_blob(data, MEDIA_TYPE_LAYER_GZIP), diff_id))
    image = layout.add_image(layers, Platform("amd64"))
    layout.tag(image.manifest, "v1")
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{gk.host}/{REPOSITORY}:v1")
    assert wait_state(gk, image.manifest.digest) == "quarantined"
    return image.manifest.digest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o755
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    return Screenshots(tmp_path_factory.mktemp("console-screenshots"))


def sign_in(driver: webdriver.Chrome, gk: Gatekeeper, name: str, password: str) -> None:
    driver.get(f"{gk.url}/ui/")
    assert "/ui/login" in driver.current_url  # not signed in: sent to the sign-in page
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]"))


def follow(driver: webdriver.Chrome, element: WebElement) -> None:
    """Click a link or a submit button and wait until the next page has replaced this one.

    Asked of the document's root (a new page has a new one), not of the clicked element:
    Chromium's driver, busy with the navigation, has answered a question about the old
    page's element with an error other than "stale" (a CI run failed on it)."""
    before = driver.find_element(By.TAG_NAME, "html").id
    element.click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "html").id != before)


def visit(driver: webdriver.Chrome, shots: Screenshots, name: str) -> str:
    """Check and photograph the page shown; its HTML."""
    check_accessibility(driver, name)
    shots.take(driver, name)
    return driver.page_source


def test_review_release_and_pull_with_javascript_off(
    gk: Gatekeeper,
    passwords: dict[str, str],
    quarantined: str,
    skopeo: Skopeo,
    shots: Screenshots,
    tmp_path: Path,
) -> None:
    digest = quarantined
    with chromium(tmp_path / "profile", javascript=False) as driver:
        driver.get("data:text/html,<title>x</title><script>document.title='ran'</script>")
        assert driver.title == "x", "this browser must not run scripts"

        driver.get(f"{gk.url}/ui/login")
        visit(driver, shots, "login")
        sign_in(driver, gk, "rita", passwords["rita"])
        assert driver.find_element(By.TAG_NAME, "h1").text == "Overview"
        visit(driver, shots, "overview")

        follow(driver, driver.find_element(By.LINK_TEXT, "Quarantine queue"))
        queue = visit(driver, shots, "queue")
        assert f"{REPOSITORY}@{digest[:19]}" in queue
        follow(driver, driver.find_element(By.PARTIAL_LINK_TEXT, f"{REPOSITORY}@{digest[:19]}"))

        _review_the_finding(driver, shots)

        reason = "token revoked upstream; reviewed by rita"
        driver.find_element(By.ID, "release-reason").send_keys(reason)
        driver.find_element(By.ID, "release-days").send_keys("7")
        follow(driver, driver.find_element(By.XPATH, "//button[text()='Release']"))
        assert driver.find_element(By.CSS_SELECTOR, ".done").text == "Released."
        assert driver.find_element(By.ID, "state").text == "released"
        visit(driver, shots, "image-released")

        skopeo.copy(f"docker://{gk.host}/{REPOSITORY}:v1", f"oci:{tmp_path / 'pulled'}:v1")

        texts = _log_rows(driver, gk)
        assert any("ui.release" in t and "rita" in t and reason in t for t in texts), texts
        assert any("verdict.released" in t and "rita" in t for t in texts), texts
        assert any("manifest.pull" in t and "ci" in t and " 200 " in f" {t} " for t in texts), texts
        visit(driver, shots, "access-log")

        driver.get(f"{gk.url}/ui/policies?repository={REPOSITORY}")
        visit(driver, shots, "policies")
        driver.get(f"{gk.url}/ui/policies?image={REPOSITORY}@{digest}&threshold=critical")
        assert driver.find_element(By.ID, "dry-result").text in ("released", "passed")

        _add_a_vex(driver, gk, shots, digest)
        _a_forged_form_is_refused(driver, gk, digest)


def _review_the_finding(driver: webdriver.Chrome, shots: Screenshots) -> None:
    """The image page shows the leaked token's finding, redacted, and offers to waive it."""
    assert driver.find_element(By.ID, "state").text == "quarantined"
    page = visit(driver, shots, "image")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.findings tbody tr")
    texts = [r.text for r in rows]
    leak = next(t for t in texts if "secret.github-token" in t)
    assert "app/deploy.sh" in leak and "ghp_… (40 chars)" in leak and "layer 2" in leak
    assert TOKEN not in page and TOKEN[4:] not in page

    follow(driver, driver.find_element(By.PARTIAL_LINK_TEXT, "Waive"))
    visit(driver, shots, "waive")
    assert driver.find_element(By.ID, "waive-finding").get_attribute("value") == (
        "secrets:secret.github-token"
    )
    driver.back()


def _add_a_vex(driver: webdriver.Chrome, gk: Gatekeeper, shots: Screenshots, digest: str) -> None:
    """From the policies page, a VEX pasted into the form: a scope beyond rita's grant shows
    the form again with why; within it, the policies page lists the waiver it makes."""
    driver.get(f"{gk.url}/ui/policies?repository={REPOSITORY}")
    follow(driver, driver.find_element(By.ID, "add-vex"))
    doc = document(statement("CVE-2099-0001", [digest]), author="Console PSIRT")
    driver.find_element(By.ID, "vex-document").send_keys(json.dumps(doc))
    driver.find_element(By.ID, "vex-scope").send_keys("*")
    driver.find_element(By.ID, "vex-reason").send_keys("vendor analysis")
    follow(driver, driver.find_element(By.XPATH, "//button[text()='Save the VEX document']"))
    assert "outside what you may administer" in driver.find_element(By.ID, "vex-error").text
    visit(driver, shots, "vex-refused")
    scope = driver.find_element(By.ID, "vex-scope")
    scope.clear()
    scope.send_keys(REPOSITORY)
    follow(driver, driver.find_element(By.XPATH, "//button[text()='Save the VEX document']"))
    assert "VEX document stored" in driver.find_element(By.ID, "vex-done").text
    page = visit(driver, shots, "policies-vex")
    assert "CVE-2099-0001" in page and "Console PSIRT" in page


def _a_forged_form_is_refused(driver: webdriver.Chrome, gk: Gatekeeper, digest: str) -> None:
    """The session cookie alone, without the form's CSRF token, changes nothing."""
    cookie = driver.get_cookie("gatekeeper_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    forged = httpx.post(
        f"{gk.url}/ui/requarantine/{REPOSITORY}@{digest}",
        data={"reason": "no token"},
        cookies={"gatekeeper_console": cookie["value"]},
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    driver.get(f"{gk.url}/ui/images/{REPOSITORY}@{digest}")
    assert driver.find_element(By.ID, "state").text == "released"


def _log_rows(driver: webdriver.Chrome, gk: Gatekeeper) -> list[str]:
    """The access-log page's rows about the image, once the pull's row is written."""
    deadline = time.monotonic() + 15
    texts: list[str] = []
    while time.monotonic() < deadline:
        driver.get(f"{gk.url}/ui/log?repository={REPOSITORY}")
        texts = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table.log tbody tr")]
        if any("manifest.pull" in t and "ci" in t for t in texts):
            break
        time.sleep(0.3)
    return texts


def test_a_pull_only_user_is_refused(
    gk: Gatekeeper, passwords: dict[str, str], shots: Screenshots, tmp_path: Path
) -> None:
    with chromium(tmp_path / "profile") as driver:
        sign_in(driver, gk, "paul", passwords["paul"])
        assert driver.find_element(By.TAG_NAME, "h1").text == "403: FORBIDDEN"
        assert "may not use the console" in driver.find_element(By.CSS_SELECTOR, ".error").text
        visit(driver, shots, "refused")
        assert driver.get_cookie("gatekeeper_console") is None
        driver.get(f"{gk.url}/ui/queue")
        assert "/ui/login" in driver.current_url


def test_a_disabled_user_s_session_stops_at_its_next_request(
    gk: Gatekeeper, passwords: dict[str, str], quarantined: str, tmp_path: Path
) -> None:
    with chromium(tmp_path / "profile") as driver:
        sign_in(driver, gk, "dora", passwords["dora"])
        driver.get(f"{gk.url}/ui/queue")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Quarantine queue"
        assert "Release" not in driver.page_source  # an auditor looks
        done = run_cli(gk, "users", "disable", "dora")
        assert done.returncode == 0, done.stderr
        driver.refresh()
        assert "/ui/login" in driver.current_url
        assert driver.find_element(By.TAG_NAME, "h1").text == "Sign in"
