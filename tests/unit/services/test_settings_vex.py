"""VEX from the settings file: a policy's ``[policies.vex]`` names the keys it trusts for VEX
referrers and the OpenVEX files that apply to its repositories; a file or key that cannot be
used stops the start-up naming it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from config.policy import Policy
from services.policybook import PolicyBook
from tests.support.cosign import new_key, public_pem
from tests.support.vex import document, statement

IMAGE = "sha256:" + "9" * 64


def policy(**vex: Any) -> Policy:
    return Policy.model_validate(
        {"name": "p", "repositories": ["team/*"], "require": ["scan"], "vex": vex}
    )


def test_a_settings_file_document_waives_in_the_policys_repositories(tmp_path: Path) -> None:
    path = tmp_path / "app.openvex.json"
    path.write_text(json.dumps(document(statement("CVE-7", [IMAGE]), author="Ops")))
    book = PolicyBook([policy(documents=[str(path)])], moment=datetime(2026, 2, 1, tzinfo=UTC))
    (waiver,) = book.match("team/app").waivers
    assert (waiver.finding, waiver.digests, waiver.repositories) == ("CVE-7", [IMAGE], ["team/app"])
    assert waiver.reason.startswith(f"VEX file {path} by Ops, 2026-01-01T00:00:00Z")
    assert book.match("other/app").waivers == []  # another policy's repositories
    lapsed = PolicyBook(
        [policy(documents=[str(path)], expire_days=10)], moment=datetime(2026, 2, 1, tzinfo=UTC)
    )
    assert lapsed.match("team/app").waivers == []
    assert lapsed.key != book.key


def test_keys_are_read_and_identified(tmp_path: Path) -> None:
    key_file = tmp_path / "cosign.pub"
    key_file.write_bytes(public_pem(new_key()))
    trust = policy(keys=[public_pem(new_key()).decode()], key_files=[str(key_file)]).vex
    assert trust is not None and len(trust.key_ids) == 2


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"keys": ["not a key"]}, "keys.0: not a PEM public key"),
        ({"key_files": ["/nonexistent/cosign.pub"]}, "key_files.0: cannot read"),
        ({"documents": ["/nonexistent/vex.json"]}, "documents.0: cannot read"),
        ({"expire_days": 0}, "expire_days"),
    ],
)
def test_what_cannot_be_used_stops_the_start_up(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        policy(**options)


def test_a_malformed_settings_document_names_its_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**document(statement("CVE-7", [IMAGE])), "statements": []}))
    with pytest.raises(ValidationError, match=r"documents.0: .*bad.json: statements"):
        policy(documents=[str(path)])
