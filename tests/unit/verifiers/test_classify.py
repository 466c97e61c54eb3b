"""What a manifest is, from its content: the classifier's rules, and the property that no label
turns archive content into an unverified artifact."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from hypothesis import given
from hypothesis import strategies as st

from verifiers.classify import (
    EMPTY_CONFIG,
    Kind,
    classify,
    declared_artifact_type,
    is_image_config,
    parse_config,
    sniff,
)

COSIGN = "application/vnd.dev.cosign.simplesigning.v1+json"
ALLOWED = frozenset({COSIGN, "application/spdx+json"})
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def tar_bytes() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"box\n"))
    return raw.getvalue()


def v7_tar_bytes() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        tar.addfile(info, io.BytesIO(b""))
    data = bytearray(raw.getvalue())
    data[257:265] = b"\0" * 8  # no magic: an old v7 header, recognised by its checksum
    checksum = sum(data[:148]) + 8 * 32 + sum(data[156:512])
    data[148:156] = f"{checksum:06o}\0 ".encode()
    return bytes(data)


def test_sniff_knows_archives_and_nothing_else() -> None:
    assert sniff(gzip.compress(tar_bytes())) == "gzip"
    assert sniff(b"\x28\xb5\x2f\xfd" + b"\0" * 10) == "zstd"
    assert sniff(b"\xfd7zXZ\x00rest") == "xz"
    assert sniff(b"BZh91AY&SY") == "bzip2"
    assert sniff(tar_bytes()) == "tar"
    assert sniff(v7_tar_bytes()) == "tar"
    assert sniff(b'{"payload": "x"}') is None
    assert sniff(b"") is None
    assert sniff(b"\0" * 512) is None  # all zeros: the end of an archive, not a header


def test_the_declared_type_comes_from_the_labels() -> None:
    assert declared_artifact_type(None, OCI_CONFIG, [OCI_LAYER]) is None
    assert declared_artifact_type(None, OCI_CONFIG, []) is None
    assert declared_artifact_type(None, OCI_CONFIG, [COSIGN, COSIGN]) == COSIGN
    assert declared_artifact_type("x/y", OCI_CONFIG, [OCI_LAYER]) == "x/y"
    assert declared_artifact_type(None, "application/x-anything", [OCI_LAYER]) == (
        "application/x-anything"
    )
    assert declared_artifact_type(None, EMPTY_CONFIG, [OCI_LAYER]) == EMPTY_CONFIG


def test_an_image_config_names_a_platform() -> None:
    assert is_image_config({"os": "linux", "architecture": "amd64"})
    assert not is_image_config({"os": "", "architecture": ""})  # cosign's signature config
    assert not is_image_config({})
    assert not is_image_config(["os"])


def test_unreadable_configs_say_why() -> None:
    assert parse_config(b'{"os": "linux"}') == ({"os": "linux"}, None)
    assert parse_config(None)[1] == "it is larger than 4194304 bytes"
    assert "not JSON" in str(parse_config(b"\x00 nope")[1])
    assert parse_config(b"[1]")[1] == "it is a JSON list, not an object"
    deep = b'{"a":' * 100 + b"1" + b"}" * 100
    assert parse_config(deep)[1] == "it is nested deeper than 64 levels"
    # Deep enough to have raised RecursionError: an unreadable config, never "no config".
    abyss = b'{"os": "linux", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert parse_config(abyss) == (None, "it is nested deeper than 64 levels")


def judge(declared: str | None, archives: dict[str, str], image_config: bool = False) -> Kind:
    return classify(
        is_index=False,
        declared=declared,
        archives=archives,
        image_config=image_config,
        seen=(),
        allowed=ALLOWED,
        policy="p",
    ).kind


def test_content_decides() -> None:
    assert judge(None, {}) == Kind.IMAGE
    assert judge(COSIGN, {}) == Kind.ARTIFACT
    assert judge(COSIGN, {"sha256:l": "gzip"}) == Kind.IMAGE
    assert judge(COSIGN, {}, image_config=True) == Kind.IMAGE
    assert judge("application/x-anything", {}) == Kind.REFUSED
    assert judge("application/x-anything", {"sha256:l": "tar"}) == Kind.IMAGE
    seen = classify(
        is_index=False,
        declared=COSIGN,
        archives={},
        image_config=False,
        seen={"sha256:l"},
        allowed=ALLOWED,
        policy="p",
    )
    assert seen.kind == Kind.IMAGE and "carries findings of its own" in seen.why
    # A blob an image of the repository lists: the artifact would be a way out for it.
    imaged = classify(
        is_index=False,
        declared=COSIGN,
        archives={},
        image_config=False,
        seen=(),
        allowed=ALLOWED,
        policy="p",
        in_images={"sha256:l": "sha256:img"},
    )
    assert imaged.kind == Kind.IMAGE and "part of image sha256:img" in imaged.why


@given(
    declared=st.one_of(st.none(), st.sampled_from(sorted(ALLOWED)), st.text(max_size=40)),
    archive=st.sampled_from(["gzip", "zstd", "tar", "xz", "bzip2"]),
    image_config=st.booleans(),
)
def test_no_label_makes_archive_content_an_unverified_artifact(
    declared: str | None, archive: str, image_config: bool
) -> None:
    assert judge(declared, {"sha256:layer": archive}, image_config) == Kind.IMAGE


@given(declared=st.sampled_from(sorted(ALLOWED)), config=st.dictionaries(st.text(), st.text()))
def test_an_allowed_artifact_without_image_content_passes_unverified(
    declared: str, config: dict[str, str]
) -> None:
    expected = Kind.IMAGE if is_image_config(config) else Kind.ARTIFACT
    assert judge(declared, {}, is_image_config(config)) == expected
    assert json.dumps(config)  # any JSON object is a possible config
