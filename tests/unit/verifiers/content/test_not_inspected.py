"""What a content check could not look at is a finding of its own, blocking by default: every
way an entry escapes the reader (an over-long or escaping path, an oversized header, an entry
type it does not read, a whiteout holding data) and a read that stops early, for ``secrets``,
``malware`` and ``hardening``; a layer they read whole gives no such finding."""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from config.policy import Policy
from config.settings import VerifierSettings
from tests.fakes.layers import FakeBlobs, MemoryCache
from tests.unit.verifiers.content.conftest import add_layer, aws_key_id, entry, image
from tests.unit.verifiers.scan.conftest import tar_bytes
from verifiers.base import Finding, Severity
from verifiers.pipeline import Outcome
from verifiers.policy import decide
from verifiers.registry import build_verifiers
from verifiers.scan.reader import (
    UNREAD_HEADER,
    UNREAD_LONG_PATH,
    UNREAD_OUTSIDE,
    UNREAD_TYPE,
    UNREAD_WHITEOUT,
)

CHECKS = ("secrets", "malware", "hardening")
RULE = {name: f"{name.removesuffix('s')}.not-inspected" for name in CHECKS}
KEYS = f"[default]\naws_access_key_id = {aws_key_id()}\n".encode()
LONG_PATH = "srv/" + "d" * 246 + "/" + "/".join(["k" * 250] * 16) + "/credentials"
"""4,278 bytes, over the default ``max_path_length`` of 4096, as in the issue."""
STOPPED = (
    "the read stopped early (layer.truncated: layer ends in the middle of its data), "
    "nothing after it was inspected"
)


def verifiers(tmp_path: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    denylist = tmp_path / "denylist"
    denylist.write_text(hashlib.sha256(b"not in any layer").hexdigest() + "\n")
    extra = {"malware": {"denylist": str(denylist)}}
    configured = {
        name: VerifierSettings(options={**(options or {}), **extra.get(name, {})})
        for name in CHECKS
    }
    return {v.name: v for v in build_verifiers(configured, MemoryCache())}


def unknown_type(name: str, data: bytes) -> Any:
    info = tarfile.TarInfo(name)
    info.type = b"V"  # read by no scanner; ``tar -x`` writes it out as a file
    return info, data


def truncated(blobs: FakeBlobs, digest: str) -> str:
    data = gzip.compress(tar_bytes([entry("app/big", os.urandom(300_000)), entry("app/k", KEYS)]))
    return blobs.add(digest, data[: len(data) // 2])


CASES: dict[str, tuple[list[Any], dict[str, Any], str, tuple[str, ...]]] = {
    # case: (members, options, evidence, checks that could not look)
    "long-path": ([entry(LONG_PATH, KEYS)], {}, f"1 not inspected: 1 {UNREAD_LONG_PATH}", CHECKS),
    "traversal": (
        [entry("../../root/.aws/credentials", KEYS), entry("/etc/shadow", b"x")],
        {},
        f"2 not inspected: 2 {UNREAD_OUTSIDE}",
        CHECKS,
    ),
    "oversized-header": (
        [entry("srv/" + "h" * 2000 + "/credentials", KEYS)],
        {"max_header_bytes": 1024},
        f"1 not inspected: 1 {UNREAD_HEADER}",
        CHECKS,
    ),
    "unknown-type": (
        [unknown_type("srv/credentials", KEYS)],
        {},
        f"1 not inspected: 1 {UNREAD_TYPE}",
        ("secrets", "malware"),  # hardening saw its modes
    ),
    "whiteout-with-data": (
        [entry("srv/.wh.credentials", KEYS)],
        {},
        f"1 not inspected: 1 {UNREAD_WHITEOUT}",
        ("secrets", "malware"),
    ),
}


async def verified(verifier: Any, img: Any) -> list[Finding]:
    result = await verifier.verify(img)
    assert isinstance(result, list)
    return result


def not_inspected(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.rule_id.endswith(".not-inspected")]


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_way_past_the_reader_is_a_blocking_finding(tmp_path: Path, case: str) -> None:
    members, options, evidence, blind = CASES[case]
    blobs = FakeBlobs()
    layer = add_layer(blobs, "sha256:l", [entry("app/readme", b"hello\n"), *members])
    img = image(blobs, [layer])
    for name, verifier in verifiers(tmp_path, options).items():
        found = not_inspected(await verified(verifier, img))
        if name not in blind:
            assert found == [], name
            continue
        (finding,) = found
        assert (finding.verifier, finding.rule_id) == (name, RULE[name])
        assert finding.severity is Severity.HIGH
        # The manifest's finding, not the blob's: unread is not proof of what it holds.
        assert finding.location == "sha256:l" and finding.blob is None
        assert finding.evidence == evidence, name


async def test_a_read_that_stopped_early_is_a_blocking_finding(tmp_path: Path) -> None:
    blobs = FakeBlobs()
    img = image(blobs, [add_layer(blobs, "sha256:ok", [entry("a", b"b")]), truncated(blobs, "t")])
    for name, verifier in verifiers(tmp_path).items():
        (finding,) = not_inspected(await verified(verifier, img))
        assert finding.rule_id == RULE[name] and finding.location == "t"
        assert finding.blob is None
        assert finding.evidence == STOPPED


async def test_counts_and_a_stop_are_one_finding_per_layer(tmp_path: Path) -> None:
    blobs = FakeBlobs()
    big = os.urandom(1024 * 1024)  # the cut is well after the first entries were read
    tar = tar_bytes([entry(LONG_PATH, KEYS), entry("../x", KEYS), entry("big", big)])
    layer = blobs.add("sha256:l", gzip.compress(tar)[: len(big) // 2])
    secrets = verifiers(tmp_path)["secrets"]
    (finding,) = not_inspected(await verified(secrets, image(blobs, [layer])))
    counts = f"2 not inspected: 1 {UNREAD_OUTSIDE}, 1 {UNREAD_LONG_PATH}"
    assert finding.evidence == f"{counts}; {STOPPED}"


async def test_the_issue_image_is_quarantined_by_a_policy_requiring_secrets(
    tmp_path: Path,
) -> None:
    """AWS keys at a 4,278-byte path, nothing else: no longer a pass at the default threshold."""
    assert len(LONG_PATH.encode()) == 4278
    blobs = FakeBlobs()
    img = image(blobs, [add_layer(blobs, "sha256:l", [entry(LONG_PATH, KEYS)])])
    found = await verified(verifiers(tmp_path)["secrets"], img)
    policy = Policy(name="p", repositories=["team/*"], require=["secrets"])
    decision = decide(policy, "team/app", [Outcome("secrets", "1", "ok", tuple(found))])
    assert decision.state == "quarantined", decision


async def test_a_layer_read_whole_gives_no_such_finding(tmp_path: Path) -> None:
    blobs = FakeBlobs()
    members = [
        entry("usr/bin/tool", b"\x7fELF\0\0" + os.urandom(5000), 0o755),  # a binary
        entry("var/log/big.log", b"line of text\n" * 300_000),  # over secrets' max_file_bytes
        entry("etc/.wh.old", b""),  # a plain whiteout
        entry("usr/share/doc/x/README", b"skipped by configuration, not by the reader"),
    ]
    img = image(blobs, [add_layer(blobs, "sha256:l", members)])
    for verifier in verifiers(tmp_path).values():
        assert not_inspected(await verified(verifier, img)) == []
