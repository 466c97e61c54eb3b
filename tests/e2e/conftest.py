"""Fixtures shared by the end-to-end tests (the registry and gatekeeper ones live in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.webhooks import Receiver, start_receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver that fails the first attempt of every delivery."""
    started = start_receiver()
    yield started
    started.server.shutdown()
    started.server.server_close()
