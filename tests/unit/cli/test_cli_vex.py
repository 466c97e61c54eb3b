"""``gatekeeper quarantine vex add|list|withdraw`` against httpx's MockTransport: what they
send, what they print, and a file refused before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.admin import run_command
from cli.main import build_parser
from tests.support.vex import document, statement
from verifiers.vex.model import MAX_BYTES

IMAGE = "sha256:" + "4" * 64
DOC = document(statement("CVE-1", [IMAGE]), author="ACME \x1b[2J PSIRT")
STORED = {
    "source": "admin",
    "id": 3,
    "scope": "team/*",
    "subject": None,
    "author": DOC["author"],
    "status": "active",
    "document": DOC,
}
APPLIED = {"reevaluated": 2, "changed": 1, "quarantined": 0}


def run(argv: list[str], handler: Callable[[httpx.Request], httpx.Response]) -> int:
    args = build_parser().parse_args(argv)
    env = {"GATEKEEPER_ADMIN_TOKEN": "t"}
    return run_command(args.admin_command, args, env, httpx.MockTransport(handler))


def test_add_sends_the_file_and_reports_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.openvex.json"
    path.write_text(json.dumps(DOC))
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/admin/api/v1/vex")
        sent.append(json.loads(request.content))
        return httpx.Response(201, json={"vex": STORED, "reevaluation": APPLIED})

    argv = ["quarantine", "vex", "add", str(path), "--scope", "team/*", "--reason", "vendor"]
    assert run(argv, handler) == 0
    assert sent == [{"document": DOC, "scope": "team/*", "reason": "vendor"}]
    out = capsys.readouterr().out
    assert out.startswith("VEX 3: 1 statement(s) by ACME \\x1b[2J PSIRT in team/*;")
    assert "2 verdicts decided again from stored findings (1 changed" in out


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "cannot read"), (b"{", "is not JSON"), (b" " * (MAX_BYTES + 1), "larger than")],
)
def test_add_refuses_a_file_it_cannot_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, said: str
) -> None:
    path = tmp_path / "vex.json"
    if content is not None:
        path.write_bytes(content)

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    argv = ["quarantine", "vex", "add", str(path), "--scope", "team/*", "--reason", "r"]
    assert run(argv, handler) == 2
    assert said in capsys.readouterr().err


def test_list_and_withdraw(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            assert request.url.params.get("all") == "true"
            return httpx.Response(200, json={"vex": [STORED]})
        assert request.url.path == "/admin/api/v1/vex/3/withdraw"
        assert json.loads(request.content) == {"reason": "wrong"}
        withdrawn = {**STORED, "status": "withdrawn"}
        return httpx.Response(200, json={"vex": withdrawn, "reevaluation": APPLIED})

    assert run(["quarantine", "vex", "list", "--all"], handler) == 0
    table = capsys.readouterr().out
    assert "team/*" in table and "\x1b" not in table
    assert run(["quarantine", "vex", "withdraw", "3", "--reason", "wrong"], handler) == 0
    assert capsys.readouterr().out.startswith("withdrew VEX 3 (by ACME")
