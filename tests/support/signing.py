"""Images to sign, and what the gatekeeper recorded about them: the helpers the signature tests
(tests/e2e/test_signatures.py, test_signature_repository.py) share.

An :class:`Unpushed` image knows its digest before anything is pushed, so a test can sign it
first and push it after (or the other way round) and watch the verdict through
:func:`findings` and :func:`events`, read from the gatekeeper's database on either backend.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.gatekeeper import Gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, image_manifest, push_blob

ACCEPT = {"Accept": OCI_MANIFEST}


@dataclass(frozen=True)
class Unpushed:
    """An image built locally: its digest is known before anything is pushed."""

    repo: str
    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def push(self, http: httpx.Client, tag: str = "v1") -> str:
        for blob in (self.config, self.layer):
            push_blob(http, self.repo, blob)
        resp = http.put(
            f"/v2/{self.repo}/manifests/{tag}",
            content=self.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert resp.status_code == 201, resp.text
        return self.digest


def build(repo: str) -> Unpushed:
    layer, config = os.urandom(512), image_config(layers=1)
    return Unpushed(repo, config, layer, image_manifest(config, [layer]))


def reference(gk: Gatekeeper, repo: str) -> str:
    """What cosign writes as ``docker-reference``: registry host and repository."""
    return f"{gk.host}/{repo}"


def pull(http: httpx.Client, repo: str, ref: str = "v1") -> httpx.Response:
    return http.get(f"/v2/{repo}/manifests/{ref}", headers=ACCEPT)


def wait_pull(http: httpx.Client, repo: str, want: int, timeout: float = 30.0) -> httpx.Response:
    """Pull until the status is ``want`` (a re-verification is running in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = pull(http, repo)
        if resp.status_code == want or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def denial(resp: httpx.Response) -> str:
    assert resp.status_code == 403, resp.text
    error = resp.json()["errors"][0]
    assert error["code"] == "DENIED"
    return str(error["message"])


def findings(gk: Gatekeeper, repo: str, digest: str) -> dict[str, str]:
    """The signature verifier's findings for one image: rule id -> title."""
    rows = gk.database.fetch(
        "SELECT rule_id, title FROM findings WHERE repository = :r AND digest = :d "
        "AND verifier = 'signatures'",
        {"r": repo, "d": digest},
    )
    return {row["rule_id"]: row["title"] for row in rows}


def events(gk: Gatekeeper, repo: str, digest: str) -> list[dict[str, Any]]:
    """The image's verdict history, oldest first."""
    return gk.database.fetch(
        "SELECT * FROM verdict_events WHERE repository = :r AND digest = :d ORDER BY id",
        {"r": repo, "d": digest},
    )
