"""OpenVEX parsing: both spellings read, every problem refused whole with the field named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.vex import document, statement
from verifiers.vex.model import MAX_BYTES, Justification, Status, VexError, parse

IMAGE = "sha256:" + "b" * 64


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_a_v020_document_reads_with_its_statements() -> None:
    doc = parse(
        raw(
            document(
                statement("CVE-2023-49083", [IMAGE]),
                statement("CVE-1", ["pkg:pypi/cryptography@38.0.4"], "fixed"),
            )
        )
    )
    first, second = doc.statements
    assert first.status == Status.NOT_AFFECTED and first.status.waives
    assert first.justification == Justification.VULNERABLE_CODE_NOT_IN_EXECUTE_PATH
    assert first.products[0].names == (IMAGE,)
    assert second.status == Status.FIXED and second.status.waives
    assert doc.author.startswith("Security Team")


def test_the_v00_spelling_with_plain_strings_reads_too() -> None:
    doc = document()
    doc["statements"] = [
        {"vulnerability": "CVE-2", "products": [IMAGE], "status": "under_investigation"}
    ]
    parsed = parse(raw(doc))
    assert parsed.statements[0].vulnerability.name == "CVE-2"
    assert not parsed.statements[0].status.waives


def test_aliases_and_purl_identifiers_are_kept() -> None:
    product = {"@id": "https://example.com/app", "identifiers": {"purl": "pkg:npm/left-pad"}}
    vulnerability = {"name": "CVE-3", "aliases": ["GHSA-xxxx-yyyy-zzzz"]}
    doc = document({**statement("CVE-3", [product]), "vulnerability": vulnerability})
    parsed = parse(raw(doc)).statements[0]
    assert parsed.vulnerability.aliases == ("GHSA-xxxx-yyyy-zzzz",)
    assert parsed.products[0].names == ("https://example.com/app", "pkg:npm/left-pad")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"status": "not_affected", "justification": None}, "justification"),
        ({"status": "maybe"}, "status"),
        ({"justification": "trust_me"}, "justification"),
        ({"products": []}, "products"),
        ({"vulnerability": {"name": "CVE 1"}}, "vulnerability"),
        ({"impact_statement": "fine\u202etxt.exe"}, "impact_statement"),
        ({"timestamp": "2999-01-01T00:00:00Z"}, "timestamp"),
    ],
)
def test_a_bad_statement_is_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    bad = {k: v for k, v in {**statement("CVE-4", [IMAGE]), **change}.items() if v is not None}
    with pytest.raises(VexError, match=named):
        parse(raw(document(bad)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("@context", "https://example.com/not-vex"),
        ("author", ""),
        ("author", "evil\x1b[2J"),
        ("timestamp", "yesterday"),
        ("timestamp", "2999-01-01T00:00:00Z"),
        ("statements", []),
    ],
)
def test_a_bad_document_is_refused(field: str, value: Any) -> None:
    with pytest.raises(VexError, match=field):
        parse(raw({**document(statement("CVE-5", [IMAGE])), field: value}))


def test_too_many_vulnerability_product_pairs_are_refused() -> None:
    products = [f"pkg:pypi/p{n}" for n in range(1000)]
    doc = document(*(statement(f"CVE-{n}", products) for n in range(11)))
    with pytest.raises(VexError, match="more than 10000"):
        parse(raw(doc))
    parse(raw(document(*(statement(f"CVE-{n}", products) for n in range(10)))))


def test_not_json_too_large_and_too_deep_are_refused() -> None:
    with pytest.raises(VexError, match="not JSON"):
        parse(b"{")
    with pytest.raises(VexError, match="larger than"):
        parse(b" " * (MAX_BYTES + 1))
    with pytest.raises(VexError, match="not JSON"):
        parse(b"[" * 5000)
    with pytest.raises(VexError, match="not a JSON object"):
        parse(b"[]")
