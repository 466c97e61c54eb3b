"""Every CLI table and report built from stored or received text shows it escaped
(``config/text.visible``): the access-log table, identities, and a signature report, whose
details quote what an attacker signed."""

from __future__ import annotations

import pytest

from cli import main as cli_main
from cli import signatures as cli_signatures
from cli.users import UsageError, parse_grant
from verifiers.signatures.steps import Checked, Failure, Step
from verifiers.signatures.verifier import Report

HOSTILE = "x\x1b]0;pwned\x07\x1b[2J\nforged \u202edessap"
RAW = ("\x1b", "\x07", "\u202e")


def assert_escaped(out: str) -> None:
    assert not any(c in out for c in RAW), out
    assert "x\\x1b]0;pwned\\x07\\x1b[2J\\x0aforged \\u202edessap" in out


def test_the_audit_table_shows_identities_and_reasons_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    row: dict[str, object] = {
        "time": "2030-01-01T00:00:00.000",
        "identity": HOSTILE[:40],
        "reason": HOSTILE,
    }
    cli_main._print_table([row, {**row, "identity": "alice"}])
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 3
    assert not any(c in out for c in RAW)
    assert "\\u202e" in out and "\\x1b[2J" in out


def test_a_signature_report_shows_what_was_signed_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    step = Step(1, "the payload names this repository", False, HOSTILE)
    checked = Checked(
        HOSTILE, (step,), None, Failure("signature.reference-mismatch", step.name, HOSTILE)
    )
    report = Report(
        "team/app",
        "sha256:" + "a" * 64,
        None,
        (checked,),
        (HOSTILE,),
        (("signature.none-trusted", HOSTILE),),
    )
    cli_signatures._print_report(report)
    out = capsys.readouterr().out
    assert_escaped(out)
    assert out.count("\\u202edessap") == 4  # the note, the source, the step, the failure


def test_identity_names_and_grant_patterns_refuse_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main.main(["users", "create", "ops\x1b[2J", "--config", "/nonexistent.toml"]) == 2
    err = capsys.readouterr().err
    assert "control or bidirectional-control" in err and "\x1b" not in err
    with pytest.raises(UsageError, match="bidirectional"):
        parse_grant("team/\u202e*=pull")
