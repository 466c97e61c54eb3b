"""The hardening verifier: root user, SSH server, setuid/setgid and world-writable files."""

from __future__ import annotations

import tarfile
from typing import Any

import pytest

from config.policy import Policy
from config.settings import VerifierSettings
from tests.fakes.layers import FakeBlobs, MemoryCache
from tests.unit.verifiers.content.conftest import add_layer, entry, image
from verifiers.base import Finding, Severity
from verifiers.content.hardening import runs_as_root
from verifiers.lifecycle import State
from verifiers.pipeline import Outcome
from verifiers.policy import decide
from verifiers.registry import build_verifiers

SSH_STATUS = (
    b"Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2\n"
    b"Architecture: amd64\n"
)


def hardening(options: dict[str, Any] | None = None) -> Any:
    (verifier,) = build_verifiers(
        {"hardening": VerifierSettings(options=options or {})}, MemoryCache()
    )
    return verifier


async def findings(verifier: Any, img: Any) -> set[tuple[str, str]]:
    result = await verifier.verify(img)
    assert isinstance(result, list)
    return {(f.rule_id, f.location) for f in result}


def modes_layer(blobs: FakeBlobs) -> str:
    return add_layer(
        blobs,
        "sha256:m",
        [
            entry("usr/bin/passwd", b"elf", 0o4755),  # allowlisted
            entry("usr/local/bin/backdoor", b"elf", 0o4755),
            entry("usr/local/bin/grouptool", b"elf", 0o2755),
            entry("app/data.json", b"{}", 0o666),
            entry("app/cache", b"", 0o777, tarfile.DIRTYPE),
            entry("app/shared", b"", 0o1777, tarfile.DIRTYPE),  # sticky: fine
            entry("tmp", b"", 0o1777, tarfile.DIRTYPE),
            entry("tmp/scratch", b"x", 0o666),  # under tmp: fine
            entry("app/link", b"", 0o777, tarfile.SYMTYPE),  # symlinks are always 0777
        ],
    )


async def test_mode_rules() -> None:
    blobs = FakeBlobs()
    found = await findings(hardening(), image(blobs, [modes_layer(blobs)]))
    assert found == {
        ("hardening.setuid", "sha256:m:usr/local/bin/backdoor"),
        ("hardening.setgid", "sha256:m:usr/local/bin/grouptool"),
        ("hardening.world-writable", "sha256:m:app/data.json"),
        ("hardening.world-writable", "sha256:m:app/cache"),
    }


async def test_allowlists_are_options_and_need_no_new_read() -> None:
    blobs = FakeBlobs()
    layer = modes_layer(blobs)
    cache = MemoryCache()
    settings = VerifierSettings(  # an allowlist option replaces the default list
        options={
            "setuid_allowlist": ["usr/bin/passwd", "usr/local/bin/*"],
            "world_writable_allowlist": ["tmp/*", "app/*"],
        }
    )
    (first,) = build_verifiers({"hardening": VerifierSettings()}, cache)
    (second,) = build_verifiers({"hardening": settings}, cache)
    assert first.version != second.version
    await first.verify(image(blobs, [layer]))
    assert await findings(second, image(blobs, [layer])) == set()
    assert blobs.opened == [layer]  # the second verifier used the cached layer scan


async def test_deleted_setuid_file_no_longer_counts() -> None:
    blobs = FakeBlobs()
    lower = add_layer(blobs, "sha256:lo", [entry("opt/tool", b"elf", 0o4755)])
    upper = add_layer(blobs, "sha256:up", [entry("opt/.wh.tool", b"")])
    assert await findings(hardening(), image(blobs, [lower])) == {
        ("hardening.setuid", "sha256:lo:opt/tool")
    }
    assert await findings(hardening(), image(blobs, [lower, upper])) == set()


async def test_ssh_server_package_and_binary() -> None:
    blobs = FakeBlobs()
    layer = add_layer(
        blobs,
        "sha256:s",
        [
            entry("var/lib/dpkg/status", SSH_STATUS),
            entry("usr/sbin/sshd", b"elf", 0o755),
            entry("etc/pam.d/sshd", b"@include common-auth\n"),  # config, not the server
        ],
    )
    result = await hardening().verify(image(blobs, [layer]))
    assert isinstance(result, list)
    ssh = [f for f in result if f.rule_id == "hardening.ssh-server"]
    assert {f.location for f in ssh} == {"sha256:s:var/lib/dpkg/status", "sha256:s:usr/sbin/sshd"}
    assert all(f.severity is Severity.HIGH for f in ssh)
    assert blobs.opened == [layer]  # inventory and mode scan in one read


@pytest.mark.parametrize(
    ("config", "root"),
    [
        ({}, True),
        ({"config": {}}, True),
        ({"config": {"User": ""}}, True),
        ({"config": {"User": "root"}}, True),
        ({"config": {"User": "0:0"}}, True),
        ({"config": {"User": "root:staff"}}, True),
        ({"config": {"User": "app"}}, False),
        ({"config": {"User": "1000:1000"}}, False),
        ({"config": {"User": "10"}}, False),
    ],
)
def test_runs_as_root(config: dict[str, Any], root: bool) -> None:
    assert (runs_as_root(config) is not None) is root


async def test_root_config_is_a_finding_unless_allowed() -> None:
    blobs = FakeBlobs()
    layer = add_layer(blobs, "sha256:e", [entry("etc/motd", b"hi")])
    config = {"os": "linux", "config": {"User": "0"}}
    result: list[Finding] = await hardening().verify(image(blobs, [layer], config))
    assert [(f.rule_id, f.location, f.evidence) for f in result] == [
        ("hardening.runs-as-root", "config:User", "User='0'")
    ]
    assert await hardening({"allow_root": True}).verify(image(blobs, [layer], config)) == []


async def test_the_default_threshold_blocks_sshd_and_setuid_and_reports_the_rest() -> None:
    """Issue 16: with ``hardening`` required and the default threshold (high), an image that
    runs sshd as root with a setuid helper is quarantined; running as root alone, or a
    world-writable file, is reported without blocking (README "Secrets, malware, hardened
    configuration")."""
    blobs = FakeBlobs()
    risky = add_layer(
        blobs,
        "sha256:r",
        [
            entry("var/lib/dpkg/status", SSH_STATUS),
            entry("usr/sbin/sshd", b"elf", 0o755),
            entry("usr/local/bin/helper", b"elf", 0o4755),
        ],
    )
    plain = add_layer(blobs, "sha256:p", [entry("app/data.json", b"{}", 0o666)])
    policy = Policy(name="default", repositories=["*"], require=["hardening"])
    assert policy.severity_threshold == "high"

    async def decided(layer: str) -> tuple[State, set[str], set[str]]:
        result = await hardening().verify(image(blobs, [layer], {"os": "linux"}))
        assert isinstance(result, list)
        outcome = Outcome("hardening", "1", "ok", tuple(result))
        decision = decide(policy, "team/app", [outcome])
        return decision.state, {f.rule_id for f in decision.blocking}, {f.rule_id for f in result}

    state, blocking, found = await decided(risky)
    assert state is State.QUARANTINED
    assert blocking == {"hardening.ssh-server", "hardening.setuid"}
    assert "hardening.runs-as-root" in found - blocking
    state, blocking, found = await decided(plain)
    assert (state, blocking) == (State.PASSED, set())
    assert found == {"hardening.runs-as-root", "hardening.world-writable"}
