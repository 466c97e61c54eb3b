"""Reading an image config for the verifiers (``proxy/verification._read_json_blob``): a config
nested too deeply is an error that says so, never "no config" (which verifiers skip)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.verification import _read_json_blob
from verifiers.base import VerifierError

DIGEST = "sha256:" + "c" * 64


class Blobs:
    """One blob, streamed in two chunks."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @contextlib.asynccontextmanager
    async def open(self, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            half = len(self.data) // 2
            yield self.data[:half]
            yield self.data[half:]

        yield chunks()


async def read(data: bytes) -> Any:
    return await _read_json_blob(Blobs(data), DIGEST)  # type: ignore[arg-type]


async def test_a_config_reads_as_json() -> None:
    assert await read(b'{"os": "linux", "config": {"Labels": {"a": "[[["}}}') == {
        "os": "linux",
        "config": {"Labels": {"a": "[[["}},
    }


async def test_a_deeply_nested_config_fails_with_a_message() -> None:
    """It raised RecursionError; bounded, it must not turn into a config the verifiers skip."""
    with pytest.raises(VerifierError, match=f"image config {DIGEST} is nested deeper than 64"):
        await read(b'{"os": "linux", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
