"""Shared fixtures: a real Distribution registry and a real gatekeeper process in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.registry import Registry, make_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry per test module; tests use distinct repository names to stay independent."""
    reg = make_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def gatekeeper(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    """The gatekeeper in front of ``registry``, streaming (no sendfile storage root)."""
    gk = make_gatekeeper(tmp_path_factory.mktemp("gatekeeper"), registry.url)
    yield gk
    gk.stop()


@pytest.fixture
def gk_workdir(tmp_path: Path) -> Path:
    return tmp_path / "gk"
