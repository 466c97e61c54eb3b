"""Building blocks of the quarantine bypass catalogue (tests/e2e/test_bypass.py) and its
property test: a gatekeeper with authentication and a real ``secrets`` scan, a pusher and a
pull-only reader, layers carrying a freshly generated AWS key, and raw manifest pushes with any
labels an attacker might write."""

from __future__ import annotations

import base64
import io
import json
import secrets
import string
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.layers import layer
from tests.support.ocihttp import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, created, digest_of, push_blob

ADMIN_TOKEN = "bypass-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
POLICIES = [
    {
        "name": "team",
        "repositories": ["team/*", "other/*"],
        "require": ["config-sanity", "secrets"],
        "hold_seconds": 20,
    }
]
VERIFIERS: dict[str, dict[str, Any]] = {"config-sanity": {}, "secrets": {}}


@dataclass(frozen=True)
class Accounts:
    """Basic credentials of the identities the catalogue uses."""

    pusher: dict[str, str]
    """May pull and push ``team/*`` and ``other/*``."""
    reader: dict[str, str]
    """May only pull them: the identity the pusher wants to hand quarantined bytes to."""
    forensics: dict[str, str]
    """A quarantine-reader (pulls what the gate denies, logged as ``bypass``)."""


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def _cli(gk: Gatekeeper, *args: str) -> str:
    out = run_cli(gk, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]


@contextmanager
def bypass_gatekeeper(workdir: Path, upstream: str, **env: str) -> Iterator[Gatekeeper]:
    gk = make_gatekeeper(
        workdir,
        upstream,
        extra_env={
            "GATEKEEPER_AUTH__ENABLED": "true",
            "GATEKEEPER_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEKEEPER_POLICIES": json.dumps(POLICIES),
            "GATEKEEPER_VERIFIERS": json.dumps(VERIFIERS),
            **env,
        },
    )
    try:
        yield gk
    finally:
        gk.stop()


def make_accounts(gk: Gatekeeper) -> Accounts:
    pusher = _cli(
        gk, "users", "create", "pia", "--grant", "team/*=pull,push", "--grant", "other/*=pull,push"
    )
    reader = _cli(gk, "users", "create", "rob", "--grant", "team/*=pull", "--grant", "other/*=pull")
    forensics = _cli(gk, "users", "create", "fay", "--grant", "team/*=pull,quarantine-reader")
    return Accounts(basic("pia", pusher), basic("rob", reader), basic("fay", forensics))


def aws_key() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def tar_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip'd tar layer and its diff_id."""

    def build(tar: tarfile.TarFile) -> None:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    result: tuple[bytes, str] = layer(build)
    return result


HIDDEN = "/".join(["d" * 200] * 21) + "/credentials"
"""A 4,2xx-byte path: over the tar reader's limit, so the file is never read."""


def leaking_layer(key: str | None = None, path: str = "root/.aws/credentials") -> tuple[bytes, str]:
    """A layer whose only fault is an AWS access key in a credentials file at ``path``."""
    body = f"[default]\naws_access_key_id = {key or aws_key()}\n".encode()
    # Random bytes beside it, so the layer is larger than any error answer.
    return tar_layer({path: body, "app/run.bin": secrets.token_bytes(8192)})


def clean_layer(name: str = "app/data.txt") -> tuple[bytes, str]:
    return tar_layer(
        {name: secrets.token_hex(64).encode(), "app/blob.bin": secrets.token_bytes(8192)}
    )


def config_of(diff_ids: list[str], **extra: Any) -> bytes:
    return json.dumps(
        {
            "created": created(),
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            **extra,
        }
    ).encode()


def descriptor(media_type: str, data: bytes | None = None, **extra: Any) -> dict[str, Any]:
    assert data is not None
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def put_manifest(
    http: httpx.Client, repo: str, reference: str, doc: dict[str, Any], media_type: str
) -> httpx.Response:
    return http.put(
        f"/v2/{repo}/manifests/{reference}",
        content=json.dumps(doc).encode(),
        headers={"Content-Type": media_type},
    )


def pushed(
    http: httpx.Client, repo: str, reference: str, doc: dict[str, Any], media_type: str
) -> str:
    resp = put_manifest(http, repo, reference, doc, media_type)
    assert resp.status_code == 201, resp.text
    return str(resp.headers["Docker-Content-Digest"])


def artifact_doc(
    artifact_type: str, payload: bytes, subject: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An OCI 1.1 artifact: the empty config, one payload layer of its own type, a subject."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(EMPTY, EMPTY_BLOB),
        "layers": [descriptor(artifact_type, payload)],
    }
    if subject is not None:
        doc["subject"] = descriptor(OCI_MANIFEST, json.dumps(subject).encode())
    return doc


def image_doc(config: bytes, layers: list[bytes], **extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, data) for data in layers],
        **extra,
    }


@dataclass(frozen=True)
class Image:
    """An image pushed for the catalogue, with its parts."""

    repository: str
    digest: str
    config: bytes
    layers: tuple[bytes, ...]
    manifest: dict[str, Any]


def push_image(
    http: httpx.Client,
    repo: str,
    tag: str,
    layers: list[tuple[bytes, str]],
    **extra: Any,
) -> Image:
    config = config_of([diff for _, diff in layers])
    for data in (config, *(data for data, _ in layers)):
        push_blob(http, repo, data)
    doc = image_doc(config, [data for data, _ in layers], **extra)
    digest = pushed(http, repo, tag, doc, OCI_MANIFEST)
    return Image(repo, digest, config, tuple(data for data, _ in layers), doc)


def denied(resp: httpx.Response) -> str:
    """The DENIED message of a refused request (and that no body of a blob came with it)."""
    assert resp.status_code == 403, f"{resp.status_code} {resp.text[:300]}"
    error = resp.json()["errors"][0]
    assert error["code"] == "DENIED", error
    return str(error["message"])


def state_of(gk: Gatekeeper, repository: str, digest: str, timeout: float = 60) -> str:
    """The verdict once it is no longer pending."""
    import time

    deadline = time.monotonic() + timeout
    state = "none"
    while time.monotonic() < deadline:
        rows = gk.database.fetch(
            "SELECT state FROM verdicts WHERE repository = :r AND digest = :d",
            {"r": repository, "d": digest},
        )
        state = str(rows[0]["state"]) if rows else "none"
        if state not in ("pending", "none"):
            return state
        time.sleep(0.1)
    return state


def last_row(gk: Gatekeeper, identity: str, path: str) -> dict[str, Any]:
    """The access-log row of the latest request ``identity`` made to ``path``."""
    rows = gk.wait_audit(1, "identity = :i AND path = :p", {"i": identity, "p": path})
    assert rows, f"no access-log row for {identity} {path}"
    return rows[-1]
