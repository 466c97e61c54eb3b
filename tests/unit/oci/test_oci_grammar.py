"""The OCI grammar package (oci/): defined once, imported by proxy, config and verifiers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from oci.cosign_tags import CosignTag, cosign_tag, read_cosign_tag
from oci.grammar import is_repository_name, is_tag, is_valid_digest

ROOT = Path(__file__).resolve().parents[3]
HEX = "ab" * 32


def test_repository_names() -> None:
    for good in ("a", "team/app", "a.b_c__d--e/f", "x" * 255):
        assert is_repository_name(good), good
    for bad in ("", "A", "a//b", "a/", "/a", "a..b", "a_-b", "-a", "a b", "x" * 256, "a:b"):
        assert not is_repository_name(bad), bad


def test_tags_and_digests() -> None:
    assert is_tag("v1.2-rc_3") and is_tag("_") and is_tag("a" * 128)
    assert not any(is_tag(t) for t in ("", ".a", "-a", "a" * 129, "a/b", "a:b"))
    assert is_valid_digest(f"sha256:{HEX}") and is_valid_digest("sha512:" + "0" * 128)
    for bad in (f"sha256:{HEX.upper()}", f"sha256:{HEX}0", f"md5:{HEX}", HEX, "sha512:" + HEX):
        assert not is_valid_digest(bad), bad


@pytest.mark.parametrize("kind", ["sig", "att", "sbom"])
def test_cosign_tags_read_back_what_they_write(kind: str) -> None:
    tag = cosign_tag(f"sha256:{HEX}", kind)  # type: ignore[arg-type]
    assert tag == f"sha256-{HEX}.{kind}"
    assert read_cosign_tag(tag) == CosignTag(subject=f"sha256:{HEX}", kind=kind)  # type: ignore[arg-type]


def test_other_tags_are_not_cosign_tags() -> None:
    assert cosign_tag(f"sha256:{HEX}") == f"sha256-{HEX}.sig"
    for other in ("latest", f"sha256-{HEX}.sigx", f"sha256-{HEX[:-1]}.sig", f"sha512-{HEX}.sig"):
        assert read_cosign_tag(other) is None, other


def test_the_grammar_package_imports_nothing_of_ours() -> None:
    """``oci`` is the lowest package: proxy, config and verifiers all import it."""
    ours = {"proxy", "cli", "services", "upstream", "verifiers", "storage", "config", "tests"}
    for path in sorted((ROOT / "oci").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in ours, (path.name, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in ours, (path.name, alias.name)


def test_the_grammar_is_written_once() -> None:
    """The name pattern and cosign's tag pattern appear in no other source module."""
    needles = (r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*", r"\.(sig|att|sbom)")
    for top in ("proxy", "cli", "services", "upstream", "verifiers", "storage", "config"):
        for path in sorted((ROOT / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            assert not any(n in text for n in needles), path.relative_to(ROOT)
