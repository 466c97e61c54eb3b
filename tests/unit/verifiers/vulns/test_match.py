"""OSV range semantics over real PyPA and Go records, with each ecosystem's version order."""

from __future__ import annotations

import pytest

from tests.unit.verifiers.vulns.conftest import record
from verifiers.vulns.match import fixed_version, is_affected, matches
from verifiers.vulns.osv import Advisory, Affected, Event, Range

pytestmark = pytest.mark.testdata


@pytest.mark.parametrize(
    ("version", "affected", "fix"),
    [
        ("1.26.12", True, "1.26.17"),  # Debian 12's python3-urllib3
        ("1.26.16", True, "1.26.17"),
        ("1.26.17", False, ""),  # exactly at fixed: not affected
        ("1.26.18", False, ""),
        ("2.0.0", True, "2.0.6"),  # second range (events are listed out of order)
        ("2.0.6", False, ""),
        ("2.1.0", False, ""),
    ],
)
def test_urllib3_ranges(version: str, affected: bool, fix: str) -> None:
    advisory = record("pypi/PYSEC-2023-192.json")
    (entry,) = advisory.affected
    assert is_affected(entry, version) is affected
    assert fixed_version(entry, version) == fix


def test_pep440_order_not_string_order() -> None:
    (entry,) = record("pypi/PYSEC-2023-246.json").affected  # aiohttp < 3.8.6
    assert is_affected(entry, "3.8.4")  # Debian 12's python3-aiohttp
    assert is_affected(entry, "3.8.6rc1")  # a pre-release sorts before its release
    assert not is_affected(entry, "3.10.0")  # "3.10" > "3.8" numerically, not as a string


def test_explicit_versions_match_without_ranges() -> None:
    entry = Affected(ecosystem="PyPI", name="x", versions=("1.0",))
    assert is_affected(entry, "1.0")
    assert not is_affected(entry, "1.0.1")


@pytest.mark.parametrize(
    "name", ["GO-2023-1751", "GO-2023-1752", "GO-2023-1753", "GO-2023-1878", "GO-2023-1987"]
)
def test_go_stdlib_records_affect_go1_19_8(name: str) -> None:
    advisory = record(f"go/{name}.json")
    found = matches([advisory], "Go", "stdlib", "go1.19.8")
    assert [m.advisory.id for m in found] == [name]
    assert found[0].fixed.startswith("1.19.")


def test_go_semver_boundaries() -> None:
    advisory = record("go/GO-2023-1751.json")  # fixed 1.19.9 and 1.20.4
    (entry,) = [a for a in advisory.affected if a.name == "stdlib"]
    assert is_affected(entry, "1.19.8")
    assert not is_affected(entry, "1.19.9")
    assert is_affected(entry, "1.20.0-0")
    assert is_affected(entry, "1.20.3")
    assert not is_affected(entry, "1.20.4")


def _ranged(*events: tuple[str, str], ecosystem: str = "PyPI") -> Affected:
    rng = Range("ECOSYSTEM", tuple(Event(k, v) for k, v in events))
    return Affected(ecosystem=ecosystem, name="p", ranges=(rng,))


def test_last_affected_is_inclusive() -> None:
    entry = _ranged(("introduced", "1.0"), ("last_affected", "1.4"))
    assert not is_affected(entry, "0.9")
    assert is_affected(entry, "1.0")
    assert is_affected(entry, "1.4")  # exactly at last_affected: affected
    assert not is_affected(entry, "1.4.1")


def test_limit_caps_the_range() -> None:
    entry = _ranged(("introduced", "0"), ("limit", "2.0"))
    assert is_affected(entry, "1.9")
    assert not is_affected(entry, "2.0")


def test_debian_order_with_epochs_and_revisions() -> None:
    entry = _ranged(("introduced", "0"), ("fixed", "1:2.36-9+deb12u3"), ecosystem="Debian:12")
    assert is_affected(entry, "1:2.36-9+deb12u2")
    assert not is_affected(entry, "1:2.36-9+deb12u3")
    assert is_affected(entry, "2.99")  # epoch 0: below any epoch-1 version
    assert not is_affected(entry, "2:0.1")  # an epoch outranks any upstream version
    assert is_affected(entry, "1:2.36-9+deb12u2~bpo1")  # "~" sorts before the empty string


def test_git_ranges_are_ignored_and_unknown_ecosystems_do_not_guess() -> None:
    data = {
        "id": "X-1",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "p"},
                "ranges": [{"type": "GIT", "events": [{"introduced": "0"}, {"fixed": "abc"}]}],
            }
        ],
    }
    (entry,) = Advisory.from_json(data).affected
    assert entry.ranges == ()
    assert not is_affected(_ranged(("introduced", "0"), ecosystem="Nonesuch"), "1.0")


def test_name_and_ecosystem_must_both_match() -> None:
    advisory = record("pypi/PYSEC-2023-192.json")
    assert matches([advisory], "PyPI", "urllib3", "1.26.12")
    assert not matches([advisory], "PyPI", "requests", "1.26.12")
    assert not matches([advisory], "npm", "urllib3", "1.26.12")
