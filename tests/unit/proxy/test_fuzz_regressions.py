"""Inputs the fuzzers (``make fuzz``) once crashed on, replayed through the same targets, plus
a short run of each target so a broken target is noticed without running the fuzzer."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.seeds import SEEDS
from fuzz.targets import TARGETS
from oci.errors import Code, OCIError
from oci.manifests import OCI_MANIFEST, parse_manifest
from tests.support.tars import pax_file

CRASHES = [
    # atheris, manifest: a non-string mediaType (with no Content-Type) reached a set lookup and
    # raised TypeError (unhashable list): a 500 instead of MANIFEST_INVALID.
    (
        "manifest",
        b'\x00{"schemaVersion": 2, "mediaType": [{"mediaType": "application/v", "size": 4}]}',
    ),
    ("manifest", b'\x00{"schemaVersion": 2, "mediaType": {"a": 1}}'),
    # hypothesis, layer: a PAX size of '\u00b2' passed str.isdigit() and then failed int()
    # (a ValueError out of the reader);
    # tests/unit/verifiers/scan/test_tarstream_properties.py has more.
    ("layer", b"\x00" + pax_file("\u00b2")),
]


@pytest.mark.parametrize(
    ("target", "data"),
    CRASHES,
    ids=["list-media-type", "object-media-type", "pax-size-superscript"],
)
def test_crash_inputs_stay_fixed(target: str, data: bytes) -> None:
    TARGETS[target](data)


@pytest.mark.parametrize("content_type", [None, "", OCI_MANIFEST])
def test_non_string_media_type_is_manifest_invalid(content_type: str | None) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": ["x"]}).encode()
    with pytest.raises(OCIError) as raised:
        parse_manifest("r", body, content_type)
    assert raised.value.code is Code.MANIFEST_INVALID


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_pass_their_target(name: str) -> None:
    for seed in SEEDS[name]():
        TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_targets_on_random_bytes(name: str) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=4096))
    def check(data: bytes) -> None:
        TARGETS[name](data)

    check()
