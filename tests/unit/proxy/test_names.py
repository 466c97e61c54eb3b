"""The spec's grammar for names, tags and digests."""

from __future__ import annotations

import pytest

from oci.errors import OCIError
from proxy.names import check_digest, check_name, check_raw_path, check_reference

GOOD_NAMES = ["a", "library/ubuntu", "a.b_c__d-e--f/g0", "x" * 255, "0/1/2/3"]
BAD_NAMES = [
    "",
    "A",
    "a/",
    "/a",
    "a//b",
    "a..b",
    "-a",
    "a-",
    "a_/b",
    "a/../b",
    "é",
    "a b",
    "x" * 256,
    "a/.b",
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names(name: str) -> None:
    with pytest.raises(OCIError) as exc:
        check_name(name)
    assert exc.value.code.code == "NAME_INVALID"


@pytest.mark.parametrize("ref", ["latest", "v1.2.3", "_x", "A" * 128, "sha256:" + "0" * 64])
def test_valid_references(ref: str) -> None:
    assert check_reference(ref) == ref


@pytest.mark.parametrize(
    ("ref", "code"),
    [
        (".x", "TAG_INVALID"),
        ("..", "TAG_INVALID"),  # a tag names a folder of the registry's storage
        ("a/../b", "TAG_INVALID"),
        ("a\x00", "TAG_INVALID"),
        ("-x", "TAG_INVALID"),
        ("A" * 129, "TAG_INVALID"),
        ("a\r\nX-Injected", "TAG_INVALID"),
        ("a\r\nX-Injected: 1", "DIGEST_INVALID"),  # a colon makes it a digest reference
        ("sha256:" + "0" * 63, "DIGEST_INVALID"),
        ("sha256:" + "G" * 64, "DIGEST_INVALID"),
        ("sha512:" + "0" * 64, "DIGEST_INVALID"),
        ("unknown:abc", "DIGEST_INVALID"),
    ],
)
def test_invalid_references(ref: str, code: str) -> None:
    with pytest.raises(OCIError) as exc:
        check_reference(ref)
    assert exc.value.code.code == code


def test_sha512_digests_are_accepted() -> None:
    assert check_digest("sha512:" + "a" * 128)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/a/../b/manifests/x",
        "/v2/a/./b/manifests/x",
        "/v2/a%2fb/manifests/x",
        "/v2/a%2Fb/manifests/x",
        "/v2/%2e%2e/manifests/x",
        "/v2//a/manifests/x",
        "/v2/a%5cb/manifests/x",
    ],
)
def test_raw_path_tricks(path: str) -> None:
    with pytest.raises(OCIError):
        check_raw_path(path)


def test_plain_path_passes() -> None:
    check_raw_path("/v2/a/b/manifests/latest?x=../y")
