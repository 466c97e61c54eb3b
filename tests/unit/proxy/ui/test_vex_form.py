"""The console's VEX form in process: a document pasted with a scope and a reason goes through
the admin API's own path (stored in the person's scope, verdicts decided again at once, the
policies page listing its waiver), and a malformed document, text that is not JSON or a scope
beyond the person's grant shows the form again with why and stores nothing."""

from __future__ import annotations

import json
from collections.abc import Callable

from storage import verdicts, vex
from tests.support.vex import document, statement
from tests.unit.proxy.ui.conftest import DIGEST, Browser, Client, services_of, wait_rows
from verifiers.lifecycle import State


async def _stored(console: Client) -> list[tuple[str, str]]:
    async with services_of(console).db() as session:
        found = await vex.listed(session, include_withdrawn=True)
    return [(d.scope, d.added_by) for d in found]


async def _state(console: Client, repository: str) -> State:
    async with services_of(console).db() as session:
        found = await verdicts.get(session, repository, DIGEST)
    assert found is not None
    return found.effective_state()


async def test_a_vex_document_from_the_form_waives_and_is_shown(
    console: Client, browser: Callable[[], Browser]
) -> None:
    tina = browser()
    await tina.sign_in("tina")
    policies = await (await tina.get("/ui/policies?repository=team/app")).text()
    assert 'href="/ui/vex"' in policies and '<td colspan="5">None.</td>' in policies
    form = await tina.get("/ui/vex")
    assert form.status == 200 and 'name="document"' in await form.text()
    doc = json.dumps(document(statement("CVE-1", [DIGEST]), author="Vendor PSIRT"))
    resp = await tina.post("/ui/vex", {"document": doc, "scope": "team/app", "reason": "vendor"})
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/ui/policies?repository=team%2Fapp&done=vex"
    assert await _stored(console) == [("team/app", "tina")]
    assert await _state(console, "team/app") == State.PASSED  # decided again at once
    assert await _state(console, "other/app") == State.QUARANTINED  # outside the scope
    shown = await (await tina.get(resp.headers["Location"])).text()
    assert 'id="vex-done"' in shown and "<code>CVE-1</code>" in shown
    assert "Vendor PSIRT" in shown
    rows = await wait_rows(services_of(console).db, 1, action="ui.vex-add", status=303)
    assert rows[0].identity == "tina" and rows[0].reason == "vendor"


async def test_bad_documents_and_foreign_scopes_store_nothing(
    console: Client, browser: Callable[[], Browser]
) -> None:
    tina = browser()
    await tina.sign_in("tina")
    bad = document(statement("CVE-1", [DIGEST]))
    bad["statements"][0].pop("justification")
    cases = [
        ({"document": "{not json", "scope": "team/app"}, 422, "not valid JSON"),
        ({"document": "[1, 2]", "scope": "team/app"}, 422, "must be a JSON object"),
        ({"document": json.dumps(bad), "scope": "team/app"}, 422, "justification"),
        ({"document": json.dumps(document()), "scope": "*"}, 403, "outside what you may"),
    ]
    for fields, status, message in cases:
        resp = await tina.post("/ui/vex", {**fields, "reason": "try"})
        page = await resp.text()
        assert resp.status == status, page
        assert 'id="vex-error"' in page and message in page, page
        assert f'value="{fields["scope"]}"' in page  # the form again, as it was typed
    good = json.dumps(document(statement("CVE-1", [DIGEST])))
    resp = await tina.post("/ui/vex", {"document": good, "scope": "team/app"})
    assert resp.status == 422 and "reason" in await resp.text()
    assert await _stored(console) == []
    assert await _state(console, "team/app") == State.QUARANTINED
    rows = await wait_rows(services_of(console).db, 1, action="ui.vex-add", status=403)
    assert rows[0].decision == "deny"


async def test_readers_get_neither_the_form_nor_the_link(
    console: Client, browser: Callable[[], Browser]
) -> None:
    audrey = browser()
    await audrey.sign_in("audrey")
    assert 'href="/ui/vex"' not in await (await audrey.get("/ui/policies")).text()
    assert (await audrey.get("/ui/vex")).status == 403
    doc = json.dumps(document(statement("CVE-1", [DIGEST])))
    resp = await audrey.post("/ui/vex", {"document": doc, "scope": "team/app", "reason": "r"})
    assert resp.status == 403 and await _stored(console) == []
