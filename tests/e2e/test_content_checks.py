"""Secrets, malware and hardening checks end to end: an image built here from secrets generated
at test time (a fresh RSA key, AWS-shaped keys, a GitHub token, a docker login), a setuid
binary, a world-writable file, a denylisted file and a root user is pushed through the
gatekeeper and quarantined with one finding per rule (a denylisted file over the malware
scanner's ``max_file_bytes`` is found too, hashed as a stream); the secrets appear nowhere the
gatekeeper writes (database file, log, access log, admin API); and each layer is read from the
upstream once although inventory, vulnerabilities and the three content checks all scan it."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import secrets
import string
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, wait_state
from tests.support.layers import layer
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry
from tests.support.tap import Tap, layer_reads

pytestmark = [pytest.mark.e2e]

TOKEN = "content-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/admin/api/v1"
VERIFIERS = ["inventory", "vulnerabilities", "secrets", "malware", "hardening"]
ALNUM = string.ascii_letters + string.digits
DROPPER = os.urandom(4096)
"""The 'malware': random bytes whose SHA-256 goes into the denylist."""
MALWARE_MAX_FILE_BYTES = 1024 * 1024
BIG_DROPPER = os.urandom(3 * MALWARE_MAX_FILE_BYTES + 5)
"""Denylisted too, but over the malware scanner's ``max_file_bytes``: hashed as a stream."""
MARKER = "gatekeeper-yara-test-" + os.urandom(8).hex()
"""A string the YARA rule looks for (in a script of the risky layer)."""
HAVE_YARA = importlib.util.find_spec("yara") is not None


def random_text(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Secrets:
    """Every secret of the test image, made fresh for this run."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        self.aws_key_id = "AKIA" + random_text(string.ascii_uppercase + string.digits, 16)
        self.aws_secret = random_text(ALNUM + "/+", 40)
        self.github = "ghp_" + random_text(ALNUM, 36)
        self.registry_password = random_text(ALNUM, 28)
        self.docker_auth = base64.b64encode(f"ci:{self.registry_password}".encode()).decode()
        self.env_password = random_text(ALNUM, 24)

    def material(self) -> list[str]:
        """Strings none of which may appear in anything the gatekeeper writes."""
        key_lines = self.pem.splitlines()[1:-1]
        return [
            *key_lines,
            self.aws_key_id,
            self.aws_key_id[4:],
            self.aws_secret,
            self.github,
            self.github[4:],
            self.registry_password,
            self.docker_auth,
            self.env_password,
        ]


@pytest.fixture(scope="module")
def made() -> Secrets:
    return Secrets()


@pytest.fixture(scope="module")
def tapped(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gatekeeper, Tap]]:
    workdir = tmp_path_factory.mktemp("content")
    denylist = workdir / "denylist.sha256"
    denylist.write_text(
        f"# test droppers\n{hashlib.sha256(DROPPER).hexdigest()}\n"
        f"{hashlib.sha256(BIG_DROPPER).hexdigest()}\n"
    )
    malware: dict[str, Any] = {
        "denylist": str(denylist),
        "max_file_bytes": MALWARE_MAX_FILE_BYTES,
    }
    if HAVE_YARA:  # the optional extra; without it, yara_rules would stop the start (fail closed)
        rules = workdir / "rules.yar"
        rules.write_text(f'rule test_marker {{ strings: $m = "{MARKER}" condition: $m }}\n')
        malware["yara_rules"] = str(rules)
    tap = Tap(registry.port)
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [
                {
                    "name": "content",
                    "repositories": ["content/*"],
                    "require": VERIFIERS,
                    "severity_threshold": "high",
                }
            ]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {
                "inventory": {},
                "vulnerabilities": {},
                "secrets": {},
                "malware": {"options": malware},
                "hardening": {},
            }
        ),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
        "GATEKEEPER_LOG_LEVEL": "DEBUG",
    }
    gatekeeper = make_gatekeeper(workdir, tap.url, extra_env=env)
    yield gatekeeper, tap
    gatekeeper.stop()
    tap.close()


def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def layers(made: Secrets) -> list[tuple[bytes, str]]:
    def base(tar: tarfile.TarFile) -> None:
        status = (
            "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2\n"
            "Architecture: amd64\n"
        )
        add(tar, "var/lib/dpkg/status", status.encode())
        add(tar, "usr/sbin/sshd", b"\x7fELF-not-really", 0o755)
        add(tar, "usr/bin/passwd", b"\x7fELF-allowlisted", 0o4755)

    def leaks(tar: tarfile.TarFile) -> None:
        add(tar, "root/.ssh/id_rsa", made.pem.encode(), 0o600)
        credentials = (
            f"[default]\naws_access_key_id = {made.aws_key_id}\n"
            f"aws_secret_access_key = {made.aws_secret}\n"
        )
        add(tar, "root/.aws/credentials", credentials.encode(), 0o600)
        add(tar, "app/deploy.sh", f"#!/bin/sh\nexport GH={made.github}\n".encode(), 0o755)
        docker = {"auths": {"registry.example.com": {"auth": made.docker_auth}}}
        add(tar, "root/.docker/config.json", json.dumps(docker).encode(), 0o600)

    def risky(tar: tarfile.TarFile) -> None:
        add(tar, "usr/local/bin/escalate", b"\x7fELF-suid", 0o4755)
        add(tar, "app/shared.conf", b"open to all\n", 0o666)
        add(tar, "opt/tools/helper", DROPPER, 0o755)
        add(tar, "opt/tools/big-helper", BIG_DROPPER, 0o644)
        add(tar, "opt/tools/run.sh", f"#!/bin/sh\necho {MARKER}\n".encode(), 0o755)

    return [layer(build) for build in (base, leaks, risky)]


def config(made: Secrets, diff_ids: list[str]) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin", f"DB_PASSWORD={made.env_password}"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()


@pytest.fixture(scope="module")
def pushed(tapped: tuple[Gatekeeper, Tap], made: Secrets) -> dict[str, Any]:
    gk, _ = tapped
    built = layers(made)
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, manifest = push_image(
            http, "content/app", "v1", [d for d, _ in built], config(made, [i for _, i in built])
        )
        state = wait_state(gk, digest, timeout=120)
        shown = http.get(f"{API}/images/content/app@{digest}", headers=AUTH)
        assert shown.status_code == 200, shown.text
        pull = http.get(f"/v2/content/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        audit = http.get(f"{API}/audit", params={"digest": digest}, headers=AUTH)
        assert audit.status_code == 200, audit.text
    return {
        "digest": digest,
        "layers": [d["digest"] for d in json.loads(manifest)["layers"]],
        "state": state,
        "image": shown.json(),
        "image_text": shown.text,
        "pull": pull,
        "audit_text": audit.text,
    }


def findings(pushed: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pushed["image"]["findings"])


def test_quarantined_with_a_finding_per_rule(pushed: dict[str, Any]) -> None:
    assert pushed["state"] == "quarantined"
    assert pushed["pull"].status_code == 403
    assert pushed["pull"].json()["errors"][0]["code"] == "DENIED"
    base, leaks, risky = pushed["layers"]
    where = {(f["rule_id"], f["location"]) for f in findings(pushed)}
    expected = {
        ("secret.private-key", f"{leaks}:root/.ssh/id_rsa"),
        ("secret.aws-access-key", f"{leaks}:root/.aws/credentials"),
        ("secret.github-token", f"{leaks}:app/deploy.sh"),
        ("secret.registry-credentials", f"{leaks}:root/.docker/config.json"),
        ("secret.env", "config:Env"),
        ("malware.denylisted-hash", f"{risky}:opt/tools/helper"),
        ("malware.denylisted-hash", f"{risky}:opt/tools/big-helper"),
        ("hardening.runs-as-root", "config:User"),
        ("hardening.ssh-server", f"{base}:usr/sbin/sshd"),
        ("hardening.ssh-server", f"{base}:var/lib/dpkg/status"),
        ("hardening.setuid", f"{risky}:usr/local/bin/escalate"),
        ("hardening.world-writable", f"{risky}:app/shared.conf"),
    }
    if HAVE_YARA:
        expected.add(("malware.yara:test_marker", f"{risky}:opt/tools/run.sh"))
    assert expected <= where, expected - where
    assert ("hardening.setuid", f"{base}:usr/bin/passwd") not in where  # allowlisted


def test_evidence_is_redacted(pushed: dict[str, Any], made: Secrets) -> None:
    evidence: dict[str, list[str]] = {}
    for finding in findings(pushed):
        evidence.setdefault(finding["rule_id"], []).append(finding["evidence"])
    assert evidence["secret.private-key"] == ["RSA PRIVATE KEY block"]
    assert sorted(evidence["secret.aws-access-key"]) == [
        "key id AKIA… (20 chars)",
        "secret access key … (40 chars)",
    ]
    assert evidence["secret.github-token"] == ["ghp_… (40 chars)"]
    assert evidence["secret.registry-credentials"] == [
        f"registry.example.com: auth … ({len(made.docker_auth)} chars)"
    ]
    assert evidence["secret.env"] == ["DB_PASSWORD=… (24 chars)"]
    assert sorted(evidence["malware.denylisted-hash"]) == sorted(
        f"sha256:{hashlib.sha256(data).hexdigest()}" for data in (DROPPER, BIG_DROPPER)
    )


def test_a_streamed_file_is_counted_as_not_yara_matched(pushed: dict[str, Any]) -> None:
    """YARA needs a file whole: the big dropper, hashed as a stream, is said to be unmatched,
    and not inspected by YARA is not inspected (high, a finding that blocks)."""
    risky = pushed["layers"][2]
    skipped = [
        (f["evidence"], f["severity"])
        for f in findings(pushed)
        if f["rule_id"] == "malware.not-inspected" and f["location"] == risky
    ]
    evidence = "1 not inspected: 1 not YARA-matched, larger than max_file_bytes"
    assert skipped == ([(evidence, "high")] if HAVE_YARA else [])


def test_secrets_appear_nowhere_the_gatekeeper_writes(
    tapped: tuple[Gatekeeper, Tap], pushed: dict[str, Any], made: Secrets
) -> None:
    gk, _ = tapped
    gk.wait_audit(1, "digest = :d", {"d": pushed["digest"]})
    places: dict[str, bytes] = {
        "admin API image": pushed["image_text"].encode(),
        "admin API audit": pushed["audit_text"].encode(),
        "access log rows": json.dumps(gk.audit_rows(), default=str).encode(),
        "gatekeeper log": gk.log_path.read_bytes(),
    }
    if gk.database.path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = Path(f"{gk.database.path}{suffix}")
            if path.exists():
                places[path.name] = path.read_bytes()
    else:  # PostgreSQL: every text column of every table
        tables = gk.database.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        for row in tables:
            name = row["table_name"]
            dump = gk.database.fetch(f'SELECT * FROM "{name}"')
            places[name] = json.dumps(dump, default=str).encode()
    assert len(places["gatekeeper log"]) > 0
    for what, data in places.items():
        for secret in made.material():
            assert secret.encode() not in data, f"a secret leaked into the {what}"


def test_each_layer_is_read_once_for_all_verifiers(
    tapped: tuple[Gatekeeper, Tap], pushed: dict[str, Any]
) -> None:
    _, tap = tapped
    statuses = {o["verifier"]: o["status"] for o in pushed["image"]["outcomes"]}
    assert set(VERIFIERS) <= set(statuses), statuses
    assert "error" not in statuses.values(), pushed["image"]["outcomes"]
    for digest in pushed["layers"]:
        assert len(layer_reads(tap, digest)) == 1, digest
