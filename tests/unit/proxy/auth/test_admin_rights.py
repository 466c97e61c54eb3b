"""The rules of scoped administration (``proxy.auth.rights``): which grants give what, and
which patterns provably lie inside an admin's scope (anything not provable is refused)."""

from __future__ import annotations

import pytest

from proxy.auth.rights import Rights, Scope, is_global, within
from storage.identities import Binding


def rights(*grants: tuple[str, str]) -> Rights:
    bindings = [Binding("user:x", pattern, tuple(a.split(","))) for pattern, a in grants]
    return Rights.from_bindings("x", bindings)


@pytest.mark.parametrize(
    ("inner", "outer", "expected"),
    [
        ("team/app", "team/*", True),
        ("team/*", "team/*", True),
        ("team/a*", "team/*", True),
        ("team/[ab]*", "team/*", True),
        ("team/*/x", "team/*", True),
        ("anything/at/all", "*", True),
        ("*", "*", True),
        ("*", "**", True),
        ("*", "team/*", False),
        ("t*", "team/*", False),
        ("team*", "team/*", False),  # matches team2/x
        ("tea?/app", "team/*", False),  # matches teax/app
        ("[t]eam/app", "team/*", False),  # true, but not provable by comparison: refused
        ("other/app", "team/*", False),
        ("team", "team/*", False),
        ("team/app", "team/app", True),
        ("team/app2", "team/app", False),
        ("team/x/app", "*/app", True),  # a literal name is decided exactly
        ("team/*/app", "*/app", False),  # not provable: refused
        ("team/x", "team/?", True),
        ("team/*", "team/?", False),
    ],
)
def test_a_pattern_is_within_another_only_when_that_is_provable(
    inner: str, outer: str, expected: bool
) -> None:
    assert within(inner, outer) is expected


@pytest.mark.parametrize(("pattern", "expected"), [("*", True), ("**", True), ("?", False)])
def test_only_a_pattern_of_stars_is_global(pattern: str, expected: bool) -> None:
    assert is_global(pattern) is expected


def test_a_scoped_admin_acts_and_reads_only_in_its_scope() -> None:
    team = rights(("team/*", "admin"), ("team/*", "pull,push"))
    assert team.administers.covers("team/app") and not team.administers.covers("other/app")
    assert team.reads.covers("team/app") and not team.reads.covers("other/app")
    assert not team.global_admin and not team.none
    assert team.administers.contains("team/a*") and not team.administers.contains("*")
    assert team.describe() == "x may administer team/*"


def test_the_global_admin_is_a_grant_on_star() -> None:
    assert rights(("*", "admin")).global_admin
    assert not rights(("?", "admin"), ("team/*", "admin")).global_admin
    unlimited = Rights.unlimited("admin-token")
    assert unlimited.global_admin and unlimited.reads.everything
    assert unlimited.administers.contains("anything/*")


@pytest.mark.parametrize("role", ["auditor", "quarantine-reader"])
def test_readers_read_in_their_scope_and_administer_nothing(role: str) -> None:
    reader = rights(("team/*", role))
    assert reader.reads.covers("team/app") and not reader.reads.covers("other/app")
    assert reader.administers.empty and not reader.none
    assert reader.describe() == "x administers nothing (it may read team/*)"


def test_repository_actions_give_no_admin_api_rights() -> None:
    assert rights(("*", "pull,push,delete")).none


def test_rights_add_up_over_grants() -> None:
    mixed = rights(("team/*", "admin"), ("ops/*", "auditor"), ("*", "pull"))
    assert mixed.administers == Scope(("team/*",))
    assert mixed.reads == Scope(("ops/*", "team/*"))
    assert mixed.describe() == "x may administer team/* and read ops/*"


def test_touches_finds_patterns_either_side_of_the_scope() -> None:
    scope = Scope(("team/*",))
    assert scope.touches("*") and scope.touches("team/app") and scope.touches("team/*")
    assert not scope.touches("other/*")
