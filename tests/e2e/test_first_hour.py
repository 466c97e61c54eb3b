"""A new user's first hour (issue 16), through the real registry with the settings file
``scripts/run`` serves with, ``config/gatekeeper.example.toml``, as it is:

- an image that runs sshd as root with a setuid helper is quarantined by the required
  ``hardening`` verifier (an image that only runs as root passes: that is reported, not
  blocked);
- ``gatekeeper login`` keeps an admin's token, and the release command a ``DENIED`` message
  prints then works as printed; a user without the admin role cannot log in to it;
- ``gatekeeper doctor`` finds everything in order, and says what to fix when it is not.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, wait_state
from tests.support.layers import config_for, layer
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "gatekeeper.example.toml"
GATEKEEPER = Path(sys.executable).with_name("gatekeeper")
"""The console script, as a user runs it (``.venv/bin/gatekeeper``)."""


@dataclass
class Served:
    """A gatekeeper serving the example settings, and its first admin's password."""

    gk: Gatekeeper
    password: str
    home: Path
    """The HOME of the commands a user runs (``gatekeeper login`` keeps its token there)."""

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GATEKEEPER), *args],
            env={**self.gk.env, "HOME": str(self.home)},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def served(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("first-hour")
    gk = make_gatekeeper(workdir, registry.url, start=False)
    # The harness's warn-everything policy and authentication switch would override the file:
    # this gatekeeper runs the example's own policy, verifiers and authentication.
    del gk.env["GATEKEEPER_POLICIES"], gk.env["GATEKEEPER_AUTH__ENABLED"]
    gk.env["GATEKEEPER_UPSTREAM_STORAGE_ROOT"] = str(registry.storage_root)
    gk.extra_args = ["--config", str(EXAMPLE)]
    secret = workdir / "admin-password"
    home = workdir / "home"
    home.mkdir()
    setup = Served(gk, "", home)
    done = setup.cli("users", "bootstrap", "--config", str(EXAMPLE), "--password-file", str(secret))
    assert done.returncode == 0, done.stderr
    gk.start()
    yield Served(gk, secret.read_text().strip(), home)
    gk.stop()


def files(*members: tuple[str, bytes, int]) -> tuple[bytes, str]:
    def build(tar: tarfile.TarFile) -> None:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

    return layer(build)


def push(served: Served, repository: str, *members: tuple[str, bytes, int]) -> str:
    built = [files(*members)]
    with httpx.Client(base_url=served.gk.url, auth=("admin", served.password)) as http:
        digest, _ = push_image(http, repository, "1", [b for b, _ in built], config_for(built))
    return digest


def pull(served: Served, repository: str, digest: str) -> httpx.Response:
    with httpx.Client(base_url=served.gk.url, auth=("admin", served.password)) as http:
        return http.get(f"/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})


def shown(served: Served, image: str) -> dict[str, Any]:
    rows = served.gk.database.fetch(
        "SELECT state, reasons FROM verdicts WHERE repository = :r AND digest = :d",
        dict(zip(("r", "d"), image.split("@"), strict=True)),
    )
    return rows[0]


SSHD = ("usr/sbin/sshd", b"#!/bin/sh\nexec sleep infinity\n" + os.urandom(8).hex().encode(), 0o755)
HELPER = ("usr/local/bin/backup-helper", b"#!/bin/sh\n" + os.urandom(8).hex().encode(), 0o4755)
APP = ("app/run.sh", b"#!/bin/sh\necho hello " + os.urandom(8).hex().encode(), 0o755)


def test_the_example_settings_quarantine_sshd_as_root_with_a_setuid_helper(
    served: Served,
) -> None:
    risky = push(served, "first/sshd", SSHD, HELPER)
    plain = push(served, "first/plain", APP)  # runs as root too, nothing else
    assert wait_state(served.gk, risky) == "quarantined"
    assert wait_state(served.gk, plain) == "passed"
    reasons = json.dumps(shown(served, f"first/sshd@{risky}")["reasons"])
    assert "hardening.setuid" in reasons and "hardening.ssh-server" in reasons, reasons
    denied = pull(served, "first/sshd", risky)
    assert denied.status_code == 403
    error = denied.json()["errors"][0]
    assert error["code"] == "DENIED" and "hardening.ssh-server" in error["message"]
    assert pull(served, "first/plain", plain).status_code == 200
    findings = served.gk.database.fetch(
        "SELECT rule_id, severity FROM findings WHERE digest = :d", {"d": plain}
    )
    assert ("hardening.runs-as-root", "medium") in {(f["rule_id"], f["severity"]) for f in findings}


def test_login_then_the_printed_release_command_works_as_printed(
    served: Served, tmp_path: Path
) -> None:
    digest = push(served, "first/release", SSHD, (HELPER[0], HELPER[1] + b"2", HELPER[2]))
    assert wait_state(served.gk, digest) == "quarantined"
    message = pull(served, "first/release", digest).json()["errors"][0]["message"]
    printed = re.search(r"`(gatekeeper quarantine release [^`]+)`", message)
    assert printed is not None, message

    # Before logging in, the command says what to do.
    before = served.cli(*shlex.split(printed.group(1))[1:])
    assert before.returncode == 2 and "gatekeeper login" in before.stderr, before.stderr

    login = served.cli(
        "login", "--url", served.gk.url, "-u", "admin", "--password-stdin", stdin=served.password
    )
    assert login.returncode == 0, login.stderr
    assert f"logged in to {served.gk.url} as admin" in login.stdout
    kept = served.home / ".config" / "gatekeeper" / "login.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert served.password not in kept.read_text()

    # As printed: only the reason's placeholder is filled in, as a person does.
    words = ["accepted until rebuilt" if w == "..." else w for w in shlex.split(printed.group(1))]
    released = served.cli(*words[1:])
    assert released.returncode == 0, released.stderr
    assert f"released first/release@{digest} (by admin)" in released.stdout
    assert pull(served, "first/release", digest).status_code == 200
    history = served.gk.database.fetch(
        "SELECT actor, reason FROM verdict_events WHERE digest = :d AND event = 'released'",
        {"d": digest},
    )
    assert [(h["actor"], h["reason"]) for h in history] == [("admin", "accepted until rebuilt")]

    listed = served.cli("quarantine", "list", "--state", "released")
    assert listed.returncode == 0 and f"first/release@{digest}" in listed.stdout


def test_a_user_without_an_admin_grant_cannot_log_in_to_the_admin_api(served: Served) -> None:
    made = served.cli("users", "create", "pat", "--grant", "first/*=pull", "--config", str(EXAMPLE))
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    refused = served.cli(
        "login", "--url", served.gk.url, "-u", "pat", "--password-stdin", stdin=secret
    )
    assert refused.returncode == 1
    assert (
        "logged in, but the admin API refused pat: pat holds no admin, auditor or"
        " quarantine-reader grant, so it may not use the admin API (HTTP 403)"
    ) in refused.stderr


def test_doctor_finds_the_set_up_in_order_and_says_what_to_fix(served: Served) -> None:
    done = served.cli("doctor", "--config", str(EXAMPLE), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    for name in ("upstream", "database", "migrations", "storage", "clock", "token key", "settings"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "HTTP 200" in checks["upstream"]["detail"]
    assert "the registry's layout" in checks["storage"]["detail"]
    assert checks["advisories"]["status"] == "warn"  # nothing imported yet
    assert "advisories import" in checks["advisories"]["fix"]
    assert done.stderr == ""

    broken = subprocess.run(
        [str(GATEKEEPER), "doctor", "--config", str(EXAMPLE)],
        env={
            **served.gk.env,
            "GATEKEEPER_UPSTREAM_URL": "http://127.0.0.1:9",
            "GATEKEEPER_UPSTREAM_STORAGE_ROOT": str(served.home),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert broken.returncode == 1
    lines = broken.stdout.splitlines()
    assert any(line.startswith("FAIL  upstream") for line in lines), broken.stdout
    assert any(line.startswith("FAIL  storage") for line in lines), broken.stdout
    assert "fix: start the registry, or point upstream_url" in broken.stdout
