"""The admin CLI: argument parsing, output, and failures as messages with exit statuses
(never a traceback), against httpx's MockTransport instead of a server."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.admin import load_policies, parse_duration, run_command
from cli.main import build_parser, main

DIGEST = "sha256:" + "a" * 64
VERDICT = {
    "repository": "team/app",
    "digest": DIGEST,
    "state": "quarantined",
    "effective_state": "quarantined",
    "pullable": False,
    "reasons": ["2 critical (CVE-1, CVE-2)"],
    "updated_at": "2030-01-01T00:00:00+00:00",
    "released_by": None,
    "release_expires": None,
}


def run(
    argv: list[str],
    handler: Callable[[httpx.Request], httpx.Response],
    env: dict[str, str] | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    environment = {"GATEKEEPER_ADMIN_TOKEN": "t"} if env is None else env
    return run_command(args.admin_command, args, environment, httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1h30m", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1x", "h", "0s", "1h 30m", "-1h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_list_prints_a_table_and_sends_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"images": [VERDICT]})

    assert run(["quarantine", "list", "--state", "quarantined"], handler) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["IMAGE", "STATE", "UPDATED", "REASON"]
    assert out[1].startswith(f"team/app@{DIGEST}  quarantined")
    assert seen[0].headers["Authorization"] == "Bearer t"
    assert seen[0].url.path == "/admin/api/v1/images"
    assert seen[0].url.params["state"] == "quarantined" and "repository" not in seen[0].url.params


def test_release_sends_reason_actor_and_expiry(capsys: pytest.CaptureFixture[str]) -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/admin/api/v1/images/team/app@{DIGEST}/release"
        bodies.append(json.loads(request.content))
        released = {**VERDICT, "state": "released", "released_by": "admin-token:al"}
        return httpx.Response(200, json={**released, "release_expires": "2030-01-01T01:30:00"})

    argv = ["quarantine", "release", f"team/app@{DIGEST}", "--reason", "ok", "--actor", "al"]
    assert run([*argv, "--expires-in", "90m", "--json"], handler) == 0
    assert bodies == [{"reason": "ok", "actor": "al", "expires_in_seconds": 5400.0}]
    assert json.loads(capsys.readouterr().out)["released_by"] == "admin-token:al"


def test_release_until_a_moment_sends_it_in_utc(capsys: pytest.CaptureFixture[str]) -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={**VERDICT, "state": "released", "released_by": "a"})

    end = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)
    written = end.astimezone(timezone(timedelta(hours=-10))).isoformat()
    argv = ["quarantine", "release", f"team/app@{DIGEST}", "--reason", "ok"]
    assert run([*argv, "--expires-at", written], handler) == 0
    assert bodies == [{"reason": "ok", "expires_at": end.isoformat()}]
    assert bodies[0]["expires_at"].endswith("+00:00")


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--expires-in", "367d", "--expires-in is 367.0 days; a release lasts at most 366 days"),
        ("--expires-at", "9999-12-31T00:00:00Z", "--expires-at is "),
        ("--expires-at", "2000-01-01T00:00:00+02:00", "--expires-at is in the past"),
    ],
)
def test_a_release_beyond_the_cap_is_refused_before_asking(
    capsys: pytest.CaptureFixture[str], option: str, value: str, words: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    argv = ["quarantine", "release", f"team/app@{DIGEST}", "--reason", "ok", option, value]
    assert run(argv, handler) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["2030-01-31T12:00:00", "tomorrow"])
def test_expires_at_needs_a_time_with_an_offset(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    argv = ["quarantine", "release", f"team/app@{DIGEST}", "--reason", "r", "--expires-at", value]
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "--expires-at" in capsys.readouterr().err


HOSTILE = "CVE-1\x1b[2J\x1b[H\nforged line \u202edessap"


def test_show_prints_stored_text_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """Reasons, findings and history come from images and requests: printed, nothing in them
    acts on the terminal, and each table row stays one line."""
    detail = {
        **VERDICT,
        "state": "released",
        "reasons": [HOSTILE],
        "policy": "p",
        "decided_at": None,
        "applicable_policy": {"name": "p"},
        "released_by": "admin-token:" + HOSTILE,
        "release_reason": HOSTILE,
        "findings": [
            {"severity": "critical", "verifier": "labels", "rule_id": HOSTILE, "title": HOSTILE}
        ],
        "outcomes": [{"verifier": "labels", "version": "1", "status": "ok", "detail": HOSTILE}],
        "history": [
            {
                "time": "2030-01-01T00:00:00",
                "event": "released",
                "old_state": "quarantined",
                "new_state": "released",
                "actor": HOSTILE,
                "reason": HOSTILE,
            }
        ],
    }
    assert (
        run(
            ["quarantine", "show", f"team/app@{DIGEST}"], lambda r: httpx.Response(200, json=detail)
        )
        == 0
    )
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\r\u202e")
    assert out.count("\\x1b[2J\\x1b[H\\x0aforged line \\u202edessap") >= 5
    assert (
        run(["quarantine", "list"], lambda r: httpx.Response(200, json={"images": [detail]})) == 0
    )
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and "\\u202e" in listed[1]


@pytest.mark.parametrize(
    "args",
    [
        ["--reason", "fine \u202edeliaf"],
        ["--reason", "a\nb"],
        ["--reason", "ok", "--actor", "x\x1b"],
    ],
)
def test_reasons_and_actors_with_control_characters_are_refused(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["quarantine", "release", f"team/app@{DIGEST}", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "control or bidirectional-control characters" in err and "\x1b" not in err


def test_a_refusal_message_is_printed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": {"code": "CONFLICT", "message": HOSTILE}})

    assert run(["quarantine", "requarantine", f"team/app@{DIGEST}", "--reason", "r"], handler) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "\\u202e" in err and "\x1b" not in err


def test_refusal_is_a_message_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        error = {"code": "UNAUTHORIZED", "message": "the admin token is not valid"}
        return httpx.Response(401, json={"error": error})

    assert run(["quarantine", "list"], handler) == 1
    err = capsys.readouterr().err
    assert "the admin token is not valid" in err and "GATEKEEPER_ADMIN_TOKEN" in err
    assert "Traceback" not in err


def test_a_non_gatekeeper_answer_is_described(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["quarantine", "list"], lambda r: httpx.Response(404, text="<html>")) == 1
    assert "is --url a gatekeeper?" in capsys.readouterr().err


def test_missing_token_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["quarantine", "list"], lambda r: httpx.Response(200), env={}) == 2
    assert "GATEKEEPER_ADMIN_TOKEN" in capsys.readouterr().err


def test_rescan_needs_exactly_one_target(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["quarantine", "rescan"], ["quarantine", "rescan", "--all", "--repository", "x"]):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(argv)
        assert exit_.value.code == 2


def test_unreachable_gatekeeper_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """Through ``main``, as a person would run it: a real connection to a closed port."""
    status = main(["quarantine", "list", "--url", "http://127.0.0.1:9", "--token", "t"])
    err = capsys.readouterr().err
    assert status == 3 and "cannot reach the gatekeeper at http://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_policy_file_with_toml_datetimes(tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"
    path.write_text(
        '[[policies]]\nname = "p"\nrepositories = ["*"]\nrequire = ["scan"]\n'
        '[[policies.waivers]]\nfinding = "CVE-1"\nreason = "r"\nauthor = "a"\n'
        "expires = 2030-01-01T00:00:00Z\n"
    )
    (policy,) = load_policies(path)
    assert policy["waivers"][0]["expires"] == "2030-01-01T00:00:00+00:00"
