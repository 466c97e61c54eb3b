"""The console's pages in process: what each shows to whom, the actions through forms (with
their CSRF token, scope and access-log rows), keyset pages, exports, escaping, and the
security headers every answer carries."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable

from proxy.ui.headers import CSP
from storage import verdicts, waivers
from storage.inventory import DbInventoryStore
from storage.verdicts import FindingRecord
from tests.unit.proxy.ui.conftest import (
    CRITICAL,
    DIGEST,
    LAYER,
    Browser,
    Client,
    seed,
    services_of,
    wait_rows,
)
from verifiers.lifecycle import State
from verifiers.scan.model import ImageInventory, Package

IMAGE = f"team/app@{DIGEST}"


async def _state(console: Client, repository: str, digest: str = DIGEST) -> State:
    async with services_of(console).db() as session:
        found = await verdicts.get(session, repository, digest)
    assert found is not None
    return found.state


async def test_every_answer_has_the_strict_policy_and_no_script(
    console: Client, browser: Callable[[], Browser]
) -> None:
    gale = browser()
    await gale.sign_in("gale")
    for path in (
        "/ui/",
        "/ui/queue",
        f"/ui/images/{IMAGE}",
        "/ui/log",
        "/ui/policies",
        "/ui/login",
        "/ui/static/console.css",
        "/ui/nowhere",
    ):
        resp = await gale.get(path)
        assert resp.headers["Content-Security-Policy"] == CSP, path
        assert "script-src" not in CSP and "default-src 'none'" in CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script" not in (await resp.text()).lower(), path
    assert (await gale.get("/ui/nowhere")).status == 404


async def test_the_queue_shows_only_the_reader_s_repositories(
    console: Client, browser: Callable[[], Browser]
) -> None:
    audrey, gale = browser(), browser()
    await audrey.sign_in("audrey")
    await gale.sign_in("gale")
    mine = await (await audrey.get("/ui/queue")).text()
    assert "team/app@" in mine and "other/app" not in mine
    everything = await (await gale.get("/ui/queue")).text()
    assert "team/app@" in everything and "other/app@" in everything
    resp = await audrey.get(f"/ui/images/other/app@{DIGEST}")
    assert resp.status == 403 and "outside what you may read" in await resp.text()


async def test_the_queue_pages_by_keyset_and_filters(
    console: Client, browser: Callable[[], Browser]
) -> None:
    order: list[str] = []
    for n in range(120):
        severity = "high" if n % 2 else "low"
        finding = FindingRecord("scan", f"CVE-{n}", severity, "t", "", "", None, None)
        digest = "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()
        await seed(console, "bulk/app", digest=digest, findings=(finding,))
        order.append(digest[:19])
    gale = browser()
    await gale.sign_in("gale")
    seen: list[str] = []
    url: str | None = "/ui/queue?repository=bulk/*&order=oldest"
    while url is not None:
        text = await (await gale.get(url.replace("&amp;", "&"))).text()
        seen += re.findall(r">bulk/app@(sha256:[0-9a-f]{12})…<", text)
        following = re.search(r'href="([^"]+)" rel="next"', text)
        url = following.group(1) if following else None
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen == order  # oldest change first: the order they were decided in
    high = await (await gale.get("/ui/queue?repository=bulk/app&severity=high")).text()
    assert len(re.findall(r">bulk/app@sha256", high)) == 50  # a full page, all odd
    assert "1 low" not in high and "1 high" in high
    resp = await gale.get("/ui/queue?after=not-a-cursor")
    assert resp.status == 400


async def test_the_image_page_names_the_layer_of_each_finding(
    console: Client, browser: Callable[[], Browser]
) -> None:
    audrey = browser()
    await audrey.sign_in("audrey")
    text = await (await audrey.get(f"/ui/images/{IMAGE}")).text()
    assert "CVE-1" in text and "1.2.3" in text and LAYER[:19] in text
    assert "Release" not in text  # an auditor looks, never acts
    assert 'action="/ui/release/' not in text


async def test_the_sbom_download_is_the_stored_inventory_as_cyclonedx(
    console: Client, browser: Callable[[], Browser]
) -> None:
    package = Package("pypi", "flask", "3.0.0", "app/flask.dist-info/METADATA", LAYER)
    inventory = ImageInventory(os_release=None, packages=(package,))
    await DbInventoryStore(services_of(console).db).store("team/app", DIGEST, inventory)
    audrey = browser()
    await audrey.sign_in("audrey")

    resp = await audrey.get(f"/ui/sbom/{IMAGE}")

    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/vnd.cyclonedx+json")
    assert "attachment" in resp.headers["Content-Disposition"]
    bom = json.loads(await resp.text())
    assert [(c["name"], c["version"]) for c in bom["components"]] == [("flask", "3.0.0")]


async def test_release_through_the_form_is_the_admin_api_s_release(
    console: Client, browser: Callable[[], Browser]
) -> None:
    tina = browser()
    await tina.sign_in("tina")
    form = {"reason": "reviewed: false positive", "expires_in_days": "2"}
    resp = await tina.post(f"/ui/release/{IMAGE}", form, csrf=False)
    assert resp.status == 403 and await _state(console, "team/app") == State.QUARANTINED
    resp = await tina.post(f"/ui/release/other/app@{DIGEST}", form)
    assert resp.status == 403 and await _state(console, "other/app") == State.QUARANTINED
    resp = await tina.post(f"/ui/release/{IMAGE}", {"reason": "  "})
    assert resp.status == 422 and "reason" in await resp.text()
    resp = await tina.post(f"/ui/release/{IMAGE}", form)
    assert resp.status == 303 and resp.headers["Location"].endswith("?done=released")
    async with services_of(console).db() as session:
        released = await verdicts.get(session, "team/app", DIGEST)
    assert released is not None and released.state == State.RELEASED
    assert released.released_by == "tina" and released.release_reason == form["reason"]
    assert released.release_expires is not None
    db = services_of(console).db
    rows = await wait_rows(db, 1, action="ui.release", status=303)
    assert rows[0].identity == "tina" and rows[0].reason == form["reason"]
    changes = await wait_rows(db, 1, action="verdict.released")
    assert changes[0].identity == "tina" and changes[0].digest == DIGEST
    page = await (await tina.get(f"/ui/images/{IMAGE}?done=released")).text()
    assert "Released." in page and 'id="state">released<' in page


async def test_requarantine_rescan_and_waive(
    console: Client, browser: Callable[[], Browser]
) -> None:
    gale = browser()
    await gale.sign_in("gale")
    assert (await gale.post(f"/ui/rescan/{IMAGE}", {"reason": "new rules"})).status == 303
    form = {"finding": "scan:CVE-1", "scope": "team/*", "reason": "not reachable"}
    resp = await gale.post(f"/ui/waive/{IMAGE}", form)
    assert resp.status == 303, await resp.text()
    assert await _state(console, "team/app") == State.PASSED  # decided again at once
    async with services_of(console).db() as session:
        stored = await waivers.listed(session, include_inactive=False)
    assert [(w.finding, w.scope, w.author) for w in stored] == [("scan:CVE-1", "team/*", "gale")]
    resp = await gale.post(f"/ui/requarantine/{IMAGE}", {"reason": "hold for review"})
    assert resp.status == 303 and await _state(console, "team/app") == State.QUARANTINED
    tina = browser()
    await tina.sign_in("tina")
    form = {"finding": "CVE-1", "scope": "*", "reason": "everywhere"}
    resp = await tina.post(f"/ui/waive/{IMAGE}", form)
    assert resp.status == 403 and "outside what you may administer" in await resp.text()


async def test_stored_text_is_escaped_and_controls_shown(
    console: Client, browser: Callable[[], Browser]
) -> None:
    reason = "<script>alert(1)</script> all checks \u202epassed"
    await seed(console, "team/odd", reasons=(reason,))
    gale = browser()
    await gale.sign_in("gale")
    text = await (await gale.get(f"/ui/images/team/odd@{DIGEST}")).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "\u202e" not in text and "\\u202e" in text


async def test_the_access_log_search_pages_and_exports(
    console: Client, browser: Callable[[], Browser]
) -> None:
    gale = browser()
    await gale.sign_in("gale")
    for _ in range(3):
        await gale.get("/ui/queue")
    db = services_of(console).db
    await wait_rows(db, 3, action="ui.queue")
    text = await (await gale.get("/ui/log?action=ui.queue&identity=gale")).text()
    assert text.count("<code>ui.queue</code>") == 3
    resp = await gale.get("/ui/log.csv?action=ui.queue")
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(rows) == 3 and {r["identity"] for r in rows} == {"gale"}
    resp = await gale.get("/ui/log.jsonl?action=ui.queue")
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [r["action"] for r in lines] == ["ui.queue"] * 3
    assert lines[0]["id"] > lines[-1]["id"]  # newest first


async def test_a_dry_run_changes_nothing(console: Client, browser: Callable[[], Browser]) -> None:
    audrey = browser()
    await audrey.sign_in("audrey")
    text = await (await audrey.get(f"/ui/policies?image={IMAGE}&waive=CVE-1")).text()
    assert re.search(r'id="dry-result">passed<', text), text
    text = await (await audrey.get(f"/ui/policies?image={IMAGE}&threshold=critical")).text()
    assert 'id="dry-result">quarantined<' in text  # a critical finding blocks at critical
    assert await _state(console, "team/app") == State.QUARANTINED
    assert CRITICAL.rule_id == "CVE-1"
