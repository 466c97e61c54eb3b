"""Secrets made at test time (never stored in the repository) and a small image builder over
the scan package's fakes."""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import string
import tarfile
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.fakes.layers import FakeBlobs
from tests.unit.verifiers.scan.conftest import tar_bytes
from verifiers.base import Descriptor, Image

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits


def random_text(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def random_secret(length: int) -> str:
    """A random alphanumeric value with a letter and a digit in it, as the generic rule wants
    of a key (one of about 280 draws of 32 characters has no digit: that test failed once)."""
    while True:
        value = random_text(ALNUM, length)
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            return value


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def openssh_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def aws_key_id() -> str:
    return "AKIA" + random_text(UPPER_DIGITS, 16)


def aws_secret() -> str:
    return random_text(ALNUM + "/+", 40)


def github_token() -> str:
    return "ghp_" + random_text(ALNUM, 36)


def docker_config(password: str) -> str:
    auth = base64.b64encode(f"ci:{password}".encode()).decode()
    return json.dumps({"auths": {"registry.example.com": {"auth": auth}}})


def entry(name: str, data: bytes, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> Any:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.type = kind
    return info, (data if kind == tarfile.REGTYPE else None)


def add_layer(blobs: FakeBlobs, digest: str, members: list[Any]) -> str:
    return blobs.add(digest, gzip.compress(tar_bytes(members)))


def image(
    blobs: FakeBlobs,
    layers: list[str],
    config: dict[str, Any] | None = None,
    digest: str = "sha256:i",
) -> Image:
    return Image(
        repository="team/app",
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        manifest={},
        config={"os": "linux", "config": {"User": "app"}} if config is None else config,
        layers=tuple(Descriptor(LAYER, d, 1) for d in layers),
        children=(),
        blobs=blobs,
    )
