"""Which tags are resolved from the registry's files and which are asked of the registry: a
registry that pulls through from a remote asks the remote for a tag first, so its tags are
never read from its storage (``proxy.handlers.manifests._stored_digest``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from proxy.handlers.manifests import _stored_digest
from proxy.state import Services

NAME = "team/app"
DIGEST = "sha256:" + "a" * 64


@dataclass
class FakeSettings:
    remotes: list[Any] = field(default_factory=list)


@dataclass
class FakeServices:
    settings: FakeSettings = field(default_factory=FakeSettings)


def storage(root: Path) -> Path:
    link = root / "docker/registry/v2/repositories" / NAME / "_manifests/tags/v1/current/link"
    link.parent.mkdir(parents=True)
    link.write_text(DIGEST)
    return root


def svc(*remotes: str) -> Services:
    return cast(Services, FakeServices(FakeSettings(list(remotes))))


def test_a_tag_is_resolved_from_the_files(tmp_path: Path) -> None:
    root = storage(tmp_path)
    assert _stored_digest(svc(), root, NAME, "v1") == DIGEST
    assert _stored_digest(svc(), root, NAME, "v2") is None


def test_a_digest_is_its_own_answer(tmp_path: Path) -> None:
    other = "sha256:" + "b" * 64
    assert _stored_digest(svc("hub"), tmp_path, NAME, other) == other


def test_with_remotes_configured_a_tag_is_asked_of_the_registry(tmp_path: Path) -> None:
    assert _stored_digest(svc("hub"), storage(tmp_path), NAME, "v1") is None


def test_a_registry_in_proxy_mode_is_asked_though_no_remote_is_configured(tmp_path: Path) -> None:
    root = storage(tmp_path)
    (root / "scheduler-state.json").write_text("{}")
    assert _stored_digest(svc(), root, NAME, "v1") is None
