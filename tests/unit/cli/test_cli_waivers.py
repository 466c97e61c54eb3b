"""``gatekeeper quarantine waive`` and ``waivers list|withdraw`` against httpx's MockTransport:
what they send, what they print, and the options refused before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cli.admin import run_command
from cli.main import build_parser

WAIVER = {
    "source": "database",
    "id": 7,
    "finding": "CVE-1",
    "scope": "team/*",
    "reason": "not reachable",
    "author": "tina",
    "expires_at": "2030-01-02T00:00:00+00:00",
    "status": "active",
}
APPLIED = {"reevaluated": 3, "changed": 1, "quarantined": 0}


def run(argv: list[str], handler: Callable[[httpx.Request], httpx.Response]) -> int:
    args = build_parser().parse_args(argv)
    env = {"GATEKEEPER_ADMIN_TOKEN": "t"}
    return run_command(args.admin_command, args, env, httpx.MockTransport(handler))


def test_waive_sends_the_waiver_and_reports_what_changed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/admin/api/v1/waivers")
        sent.append(json.loads(request.content))
        return httpx.Response(201, json={"waiver": WAIVER, "reevaluation": APPLIED})

    argv = ["quarantine", "waive", "CVE-1", "--scope", "team/*", "--reason", "not reachable"]
    assert run([*argv, "--expires-in", "1d"], handler) == 0
    assert sent == [
        {
            "finding": "CVE-1",
            "scope": "team/*",
            "reason": "not reachable",
            "expires_in_seconds": 86400.0,
        }
    ]
    out = capsys.readouterr().out
    assert out.startswith("waiver 7: CVE-1 in team/* until 2030-01-02T00:00:00+00:00 (by tina)")
    assert "3 verdicts decided again from stored findings (1 changed" in out


def test_waive_refuses_a_longer_expiry_before_sending(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    argv = ["quarantine", "waive", "CVE-1", "-s", "team/*", "--reason", "r", "--expires-in", "400d"]
    assert run(argv, handler) == 2
    assert "--expires-in" in capsys.readouterr().err


def test_list_shows_both_sources_and_escapes_their_text(capsys: pytest.CaptureFixture[str]) -> None:
    settings = {
        "source": "settings",
        "policy": "default",
        "finding": "CVE-2",
        "scope": "*",
        "reason": "all \u202edeliaf",
        "author": "sec",
        "expires_at": None,
        "status": "active",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["repository"] == "team/app"
        assert request.url.params["all"] == "true"
        return httpx.Response(200, json={"waivers": [WAIVER, settings]})

    assert run(["quarantine", "waivers", "list", "-r", "team/app", "--all"], handler) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "FINDING", "SCOPE", "STATUS", "EXPIRES", "AUTHOR", "REASON"]
    assert lines[1].split()[:4] == ["7", "CVE-1", "team/*", "active"]
    assert lines[2].startswith("settings:default") and "\\u202e" in lines[2]


def test_withdraw_posts_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/admin/api/v1/waivers/7/withdraw"
        assert json.loads(request.content) == {"reason": "reachable after all"}
        gone = {**WAIVER, "status": "withdrawn"}
        return httpx.Response(200, json={"waiver": gone, "reevaluation": APPLIED})

    argv = ["quarantine", "waivers", "withdraw", "7", "--reason", "reachable after all"]
    assert run(argv, handler) == 0
    assert capsys.readouterr().out.startswith("withdrew waiver 7 (CVE-1 in team/*)")
