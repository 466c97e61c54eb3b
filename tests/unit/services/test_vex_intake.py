"""Which referrers are read as VEX: cosign's OpenVEX attestations (bundle or envelope layer)
and bare OpenVEX documents (to be refused as unsigned); not signatures, not other
attestations, which the signature verifier and nobody else reads."""

from __future__ import annotations

import json
from typing import Any

from services.vex_intake import offered
from tests.support.vex import DSSE_TYPE, PREDICATE, referrer_manifest
from verifiers.vex.envelope import OPENVEX_TYPE

SUBJECT = "sha256:" + "5" * 64
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def manifest(media_type: str = BUNDLE, predicate: str | None = PREDICATE) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(referrer_manifest(b"{}", SUBJECT, media_type))
    if predicate is None:
        del doc["annotations"]["dev.sigstore.bundle.predicateType"]
    else:
        doc["annotations"]["dev.sigstore.bundle.predicateType"] = predicate
    return doc


def test_cosigns_openvex_attestations_and_bare_documents_are_offered() -> None:
    assert len(offered(manifest())) == 1
    assert len(offered(manifest(predicate="https://openvex.dev/ns/v0.2.0"))) == 1
    assert len(offered(manifest(OPENVEX_TYPE, predicate=None))) == 1
    layer_annotated = manifest(DSSE_TYPE, predicate=None)
    del layer_annotated["artifactType"]
    layer_annotated["layers"][0]["annotations"] = {"predicateType": PREDICATE}
    assert len(offered(layer_annotated)) == 1


def test_signatures_and_other_attestations_are_not() -> None:
    assert offered(manifest(predicate=None)) == []  # a signature bundle
    assert offered(manifest(predicate="https://spdx.dev/Document")) == []
    assert offered(manifest(DSSE_TYPE, predicate=None)) == []
    assert offered({"layers": "nonsense"}) == []
