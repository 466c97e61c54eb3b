"""The secrets verifier over layers: findings with redacted evidence, binaries and large files
searched too, noise directories skipped, the config's Env checked."""

from __future__ import annotations

from typing import Any

from config.settings import VerifierSettings
from tests.fakes.layers import FakeBlobs, MemoryCache
from tests.unit.verifiers.content.conftest import (
    ALNUM,
    add_layer,
    aws_key_id,
    entry,
    github_token,
    image,
    random_text,
    rsa_pem,
)
from verifiers.base import Finding, Severity, Skipped
from verifiers.content.hits import MAX_HITS
from verifiers.content.secret_windows import MARGIN, WINDOW
from verifiers.registry import build_verifiers


def secrets_verifier(options: dict[str, Any] | None = None) -> Any:
    (verifier,) = build_verifiers(
        {"secrets": VerifierSettings(options=options or {})}, MemoryCache()
    )
    return verifier


async def findings_of(verifier: Any, img: Any) -> list[Finding]:
    result = await verifier.verify(img)
    assert isinstance(result, list)
    return result


async def test_key_in_a_layer_is_found_and_never_shown() -> None:
    pem, key_id = rsa_pem(), aws_key_id()
    blobs = FakeBlobs()
    layer = add_layer(
        blobs,
        "sha256:l1",
        [
            entry("root/.ssh/id_rsa", pem.encode(), 0o600),
            entry("app/settings.env", f"AWS_ACCESS_KEY_ID={key_id}\n".encode()),
            entry("usr/share/doc/openssl/example.pem", pem.encode()),  # noise dir, skipped
            entry("app/blob.bin", b"\0\1\2" + pem.encode()),  # binary: searched all the same
            entry("app/big.txt", b"x" * 2048 + pem.encode()),  # over the limit: streamed
        ],
    )
    found = await findings_of(secrets_verifier({"max_file_bytes": 2048}), image(blobs, [layer]))
    assert sorted((f.rule_id, f.location) for f in found) == [
        ("secret.aws-access-key", "sha256:l1:app/settings.env"),
        ("secret.private-key", "sha256:l1:app/big.txt"),
        ("secret.private-key", "sha256:l1:app/blob.bin"),
        ("secret.private-key", "sha256:l1:root/.ssh/id_rsa"),
    ]
    by_rule = {f.rule_id: f for f in found}
    assert by_rule["secret.private-key"].severity is Severity.HIGH
    assert by_rule["secret.private-key"].evidence == "RSA PRIVATE KEY block"
    assert by_rule["secret.aws-access-key"].severity is Severity.CRITICAL
    assert by_rule["secret.aws-access-key"].evidence == "key id AKIA… (20 chars)"
    everything = repr(found)
    for line in pem.splitlines()[1:-1]:
        assert line not in everything
    assert key_id[4:] not in everything


async def test_env_secret_and_config_only() -> None:
    blobs = FakeBlobs()
    layer = add_layer(blobs, "sha256:l1", [entry("app/readme.txt", b"hello")])
    token = "ghp_" + "Ab3" * 12
    config = {"os": "linux", "config": {"Env": ["PATH=/usr/bin", f"DEPLOY={token}"]}}
    (finding,) = await findings_of(secrets_verifier(), image(blobs, [layer], config))
    assert finding.rule_id == "secret.env" and finding.location == "config:Env"
    assert token not in finding.evidence and finding.evidence.startswith("DEPLOY=")


async def test_deleted_secret_in_a_lower_layer_is_still_reported() -> None:
    blobs = FakeBlobs()
    lower = add_layer(blobs, "sha256:lower", [entry("root/.ssh/id_rsa", rsa_pem().encode())])
    upper = add_layer(blobs, "sha256:upper", [entry("root/.ssh/.wh.id_rsa", b"")])
    found = await findings_of(secrets_verifier(), image(blobs, [lower, upper]))
    assert [f.location for f in found] == ["sha256:lower:root/.ssh/id_rsa"]


async def test_only_indexes_skip_and_options_change_the_version() -> None:
    verifier = secrets_verifier()
    img = image(FakeBlobs(), [], {"os": "linux"})
    with_subject = type(img)(**{**img.__dict__, "manifest": {"subject": {"digest": "sha256:x"}}})
    assert await verifier.verify(with_subject) == []  # a label decides nothing
    index = type(img)(**{**img.__dict__, "is_index": True})
    assert isinstance(await verifier.verify(index), Skipped)
    assert verifier.version != secrets_verifier({"max_file_bytes": 10}).version


async def test_many_hits_are_capped_per_layer() -> None:
    blobs = FakeBlobs()
    pem = rsa_pem().encode()
    keys = [entry(f"keys/{i:02}.pem", pem) for i in range(MAX_HITS + 3)]
    layer = add_layer(blobs, "sha256:l", keys)
    found = await findings_of(secrets_verifier(), image(blobs, [layer]))
    assert len(found) == MAX_HITS + 1
    assert found[MAX_HITS - 1].location == f"sha256:l:keys/{MAX_HITS - 1:02}.pem"
    assert found[-1].location == "sha256:l" and found[-1].rule_id == "secret.private-key"
    assert found[-1].evidence == "and 3 more in this layer"


async def test_a_nul_in_front_of_a_file_of_keys_hides_none_of_them() -> None:
    blobs = FakeBlobs()
    keys = [aws_key_id() for _ in range(3)]
    data = b"\0" + "".join(f"aws_access_key_id = {k}\n" for k in keys).encode()
    value = random_text(ALNUM, 32)
    layer = add_layer(
        blobs,
        "sha256:l",
        [
            entry("root/.aws/credentials", data, 0o600),
            entry("app/blob.env", b"\0" + f"db_password = {value}\n".encode()),
        ],
    )
    found = await findings_of(secrets_verifier(), image(blobs, [layer]))
    # the keys, not the generic rule on a binary: random bytes after a "key=" would be noise
    assert [(f.rule_id, f.location) for f in found] == [
        ("secret.aws-access-key", "sha256:l:root/.aws/credentials")
    ] * 3


async def test_a_large_text_file_is_searched_to_its_end() -> None:
    blobs = FakeBlobs()
    key_id, token = aws_key_id(), github_token()
    log = b"GET /healthz 200\n" * 200_000 + f"debug: key={key_id} token {token}\n".encode()
    assert len(log) > 3 * 1024 * 1024  # three times the default max_file_bytes
    layer = add_layer(blobs, "sha256:l", [entry("var/log/app.log", log)])
    found = await findings_of(secrets_verifier(), image(blobs, [layer]))
    assert sorted((f.rule_id, f.location) for f in found) == [
        ("secret.aws-access-key", "sha256:l:var/log/app.log"),
        ("secret.github-token", "sha256:l:var/log/app.log"),
    ]
    assert key_id[4:] not in repr(found) and token[4:] not in repr(found)


async def test_a_key_across_the_streamed_chunks_of_a_large_file_is_found_once() -> None:
    blobs = FakeBlobs()
    key_id = aws_key_id()
    members = []
    for n, before in enumerate((WINDOW - 10, WINDOW - MARGIN - 10, 2 * WINDOW + 3)):
        data = b"z" * before + f" {key_id} ".encode() + b"z" * (WINDOW // 2)
        members.append(entry(f"srv/data{n}.txt", data))
    layer = add_layer(blobs, "sha256:l", members)
    found = await findings_of(secrets_verifier(), image(blobs, [layer]))
    assert sorted(f.location for f in found) == [f"sha256:l:srv/data{n}.txt" for n in range(3)]
