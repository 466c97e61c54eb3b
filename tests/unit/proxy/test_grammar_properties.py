"""Property tests: proxy.names against the grammar as the Distribution and image specs write
it, and oci.manifests.parse_manifest on arbitrary JSON. Both may only ever raise OCIError.

The regular expressions here are copied from the specs on purpose, not imported: they are the
independent oracle the implementation is checked against.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oci.errors import Code, OCIError
from oci.manifests import DOCKER_MANIFEST, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, parse_manifest
from proxy.names import check_digest, check_name, check_raw_path, check_reference

# distribution-spec, "Pulling manifests": <name> and <reference> (tag).
SPEC_NAME = re.compile(
    r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*", re.ASCII
)
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", re.ASCII)
# image-spec, descriptor.md: the digest grammar and the registered algorithms' encodings.
SPEC_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
REGISTERED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}

MANY = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
ALPHABET = st.sampled_from("abcxyz019ABZ._-/:+=%\\\r\n\0 é²")
# Valid names built piecewise (from_regex on the whole name grammar is slow), and noise.
component = st.from_regex(r"[a-z0-9]{1,4}((\.|_|__|-{1,3})[a-z0-9]{1,4}){0,2}", fullmatch=True)
valid_names = st.lists(component, min_size=1, max_size=70).map("/".join)
name_like = st.one_of(valid_names, st.text(ALPHABET, max_size=80))
tag_like = st.one_of(st.from_regex(SPEC_TAG, fullmatch=True), st.text(ALPHABET, max_size=140))
digest_like = st.one_of(
    st.builds(
        "{}:{}".format,
        st.sampled_from(["sha256", "sha512", "md5", "SHA256", "sha-256", ""]),
        st.text("0123456789abcdefABCDEF=_-", min_size=0, max_size=130),
    ),
    st.from_regex(r"[a-z0-9]{1,6}([+._-][a-z0-9]{1,3})?:[a-zA-Z0-9=_-]{1,130}", fullmatch=True),
)


def accepts(check: Any, value: str) -> bool:
    try:
        assert check(value) == value
    except OCIError:
        return False
    return True


@MANY
@given(name_like)
def test_names_follow_the_spec(name: str) -> None:
    expected = SPEC_NAME.fullmatch(name) is not None and len(name) <= 255
    assert accepts(check_name, name) == expected


@MANY
@given(tag_like)
def test_tags_follow_the_spec(tag: str) -> None:
    expected = ":" not in tag and SPEC_TAG.fullmatch(tag) is not None
    assert accepts(check_reference, tag) == expected


@MANY
@given(digest_like)
def test_digests_are_registered_algorithms_with_exact_length(digest: str) -> None:
    algorithm, _, encoded = digest.partition(":")
    strict = REGISTERED.get(algorithm)
    expected = (
        SPEC_DIGEST.fullmatch(digest) is not None
        and strict is not None
        and strict.fullmatch(encoded) is not None
    )
    assert accepts(check_digest, digest) == expected
    assert accepts(check_reference, digest) == expected


@MANY
@given(st.text(max_size=300))
def test_checks_raise_only_oci_errors(text: str) -> None:
    for check in (check_name, check_reference, check_digest, check_raw_path):
        try:
            check(text)
        except OCIError as exc:
            assert exc.code.status == 400 or exc.code is Code.NAME_INVALID


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
digests = st.sampled_from(["sha256:" + "a" * 64, "sha512:" + "b" * 128, "sha256:short", "md5:x"])
descriptors = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.one_of(st.sampled_from(sorted(MANIFEST_TYPES)), json_values),
        "digest": st.one_of(digests, json_values),
        "size": st.one_of(st.integers(-2, 2**70), json_values),
        "platform": json_values,
    },
)
manifests = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.one_of(st.just(2), json_values),
        "mediaType": st.one_of(st.sampled_from(sorted(MANIFEST_TYPES)), json_values),
        "config": st.one_of(descriptors, json_values),
        "layers": st.one_of(st.lists(descriptors, max_size=3), json_values),
        "manifests": st.one_of(st.lists(descriptors, max_size=3), json_values),
        "subject": st.one_of(descriptors, json_values),
        "artifactType": json_values,
        "annotations": st.one_of(
            st.dictionaries(st.text(max_size=5), st.text(max_size=5)), json_values
        ),
    },
)
content_types = st.sampled_from(
    [None, "", "application/json", OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST]
)


@MANY
@given(st.one_of(manifests, json_values), content_types)
def test_manifest_parser_raises_only_manifest_invalid(doc: Any, content_type: str | None) -> None:
    body = json.dumps(doc).encode()
    try:
        record = parse_manifest("r", body, content_type)
    except OCIError as exc:
        assert exc.code is Code.MANIFEST_INVALID
        return
    assert record.media_type in MANIFEST_TYPES
    assert all(ref.size >= 0 for ref in record.refs)


@MANY
@given(st.binary(max_size=2048), content_types)
def test_manifest_parser_on_bytes(body: bytes, content_type: str | None) -> None:
    try:
        parse_manifest("r", body, content_type)
    except OCIError as exc:
        assert exc.code is Code.MANIFEST_INVALID
