"""Whiteouts across layers: what a later layer deletes, hides or rewrites is gone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.base import Descriptor
from verifiers.layers import distinct_layers
from verifiers.scan.filesystem import Changes, apply_layers
from verifiers.scan.inventory import merge
from verifiers.scan.model import LayerInventory, OsRelease, Package

DPKG = "var/lib/dpkg/status"


def pkg(name: str, path: str, layer: str = "l1", ecosystem: str = "deb") -> Package:
    return Package(ecosystem, name, "1.0", path, layer=layer, arch="amd64")


def names(layers: list[LayerInventory]) -> list[str]:
    return sorted(p.name for p in merge(layers).packages)


def test_whiteout_of_a_file_and_of_a_directory() -> None:
    base = LayerInventory(
        packages=(pkg("bash", DPKG), pkg("req", "py/req.dist-info/METADATA", ecosystem="pypi"))
    )
    assert names([base, LayerInventory(whiteouts=(DPKG,))]) == ["req"]
    assert names([base, LayerInventory(whiteouts=("py/req.dist-info",))]) == ["bash"]
    assert names([base, LayerInventory(whiteouts=("py",))]) == ["bash"]
    assert names([base, LayerInventory(whiteouts=("py/re",))]) == ["bash", "req"]


def test_opaque_directory_hides_lower_contents_but_not_its_own() -> None:
    base = LayerInventory(packages=(pkg("a", "app/node_modules/a/package.json", ecosystem="npm"),))
    upper = LayerInventory(
        opaque=("app/node_modules",),
        packages=(pkg("b", "app/node_modules/b/package.json", "l2", "npm"),),
    )
    assert names([base, upper]) == ["b"]


def test_rewritten_database_replaces_the_lower_one() -> None:
    base = LayerInventory(packages=(pkg("bash", DPKG), pkg("curl", DPKG)))
    upper = LayerInventory(packages=(pkg("bash", DPKG, "l2"),), present=(DPKG,))
    merged = merge([base, upper]).packages
    assert [(p.name, p.layer) for p in merged] == [("bash", "l2")]


def test_emptied_database_in_a_later_layer_removes_everything() -> None:
    base = LayerInventory(packages=(pkg("bash", DPKG),))
    assert names([base, LayerInventory(present=(DPKG,))]) == []


def test_os_release_and_purls() -> None:
    debian = OsRelease("debian", "12", path="usr/lib/os-release", layer="l1")
    base = LayerInventory(packages=(pkg("bash", DPKG),), os_release=debian)
    merged = merge([base, LayerInventory()])
    assert merged.os_release == debian
    assert merged.packages[0].purl == "pkg:deb/debian/bash@1.0?arch=amd64&distro=debian-12"
    gone = merge([base, LayerInventory(whiteouts=("usr/lib/os-release",))])
    assert gone.os_release is None


def test_apply_layers_is_generic() -> None:
    layers = [(Changes(), ["a/x", "b/y"]), (Changes.of(["a"], [], []), ["a/z"])]
    assert apply_layers(layers, lambda s: s) == ["b/y", "a/z"]


PATHS = st.sampled_from(["", "a", "a/b", "a/b/c", "a/d", "e", "e/f"])
LAYER = st.builds(
    LayerInventory,
    packages=st.lists(PATHS.filter(bool), max_size=3).map(
        lambda paths: tuple(pkg(f"p{n}", path) for n, path in enumerate(paths))
    ),
    whiteouts=st.lists(PATHS.filter(bool), max_size=2).map(tuple),
    opaque=st.lists(PATHS, max_size=1).map(tuple),
    present=st.lists(PATHS.filter(bool), max_size=2).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(pool=st.lists(LAYER, min_size=1, max_size=4), picks=st.lists(st.integers(0, 3), max_size=8))
def test_a_repeated_layer_counts_once_at_its_last_position(
    pool: list[LayerInventory], picks: list[int]
) -> None:
    """``distinct_layers`` keeps each digest's last position only; the final filesystem is the
    same, both with the rewritten paths of inventories and without them (hardening's hits)."""
    stack = [Descriptor("tar", f"sha256:{n % len(pool)}", 1) for n in picks]
    kept = distinct_layers(stack)
    assert [d.digest for d in kept] == list(dict.fromkeys(d.digest for d in reversed(stack)))[::-1]

    def of(layers: Sequence[Descriptor]) -> list[LayerInventory]:
        return [
            replace(
                pool[int(d.digest.removeprefix("sha256:"))],
                packages=tuple(
                    replace(p, layer=d.digest)
                    for p in pool[int(d.digest.removeprefix("sha256:"))].packages
                ),
            )
            for d in layers
        ]

    def visible(layers: list[LayerInventory]) -> set[tuple[str, str, str]]:
        return {(p.name, p.path, p.layer) for p in merge(layers).packages}

    def hits(layers: list[LayerInventory]) -> set[tuple[str, str]]:
        changes = [(Changes.of(li.whiteouts, li.opaque, ()), li.packages) for li in layers]
        return {(p.path, p.layer) for p in apply_layers(changes, lambda p: p.path)}

    assert visible(of(stack)) == visible(of(kept))
    assert hits(of(stack)) == hits(of(kept))
