"""A stored image for the re-evaluation unit tests (``services.reevaluate``, ``services.rescan``): a
passed verdict with an inventory in a real database, OSV advisories to import against it, and a
recorder of the verdict changes published."""

from __future__ import annotations

from typing import Any

from config.policy import Policy
from services.events import VerdictChange
from storage import verdicts
from storage.advisories import DbAdvisoryStore, ImportResult
from storage.inventory import DbInventoryStore
from storage.verdicts import DecisionRecord, FindingRecord
from verifiers.lifecycle import State
from verifiers.scan.model import ImageInventory, OsRelease, Package
from verifiers.vulns.assess import version_for
from verifiers.vulns.osv import Advisory

REPO = "team/app"
DIGEST = "sha256:" + "a" * 64
DEBIAN = OsRelease("debian", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)")
POLICY = Policy(name="team", repositories=["team/*"], require=["inventory", "vulnerabilities"])
CONFIG_FINDING = FindingRecord("config-sanity", "config.no-user", "low", "runs as root", "User")


def osv(ident: str, name: str, fixed: str | None, severity: str = "HIGH") -> Advisory:
    """A PyPI advisory on ``name`` from version 0, fixed in ``fixed`` (never, if None)."""
    events: list[dict[str, str]] = [{"introduced": "0"}]
    if fixed:
        events.append({"fixed": fixed})
    return Advisory.from_json(
        {
            "id": ident,
            "modified": "2026-01-01T00:00:00Z",
            "summary": f"{name} is broken",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": name},
                    "ranges": [{"type": "ECOSYSTEM", "events": events}],
                }
            ],
            "database_specific": {"severity": severity},
        }
    )


def inventory(*packages: tuple[str, str]) -> ImageInventory:
    """A Debian 12 image's inventory holding the given ``(name, version)`` PyPI packages."""
    return ImageInventory(
        os_release=DEBIAN,
        packages=tuple(
            Package(
                "pypi", n, v, f"site-packages/{n}.dist-info/METADATA", layer="sha256:" + "1" * 64
            )
            for n, v in packages
        ),
    )


def passed() -> DecisionRecord:
    """A passed decision under ``POLICY`` with no advisories yet and one config finding."""
    outcomes: tuple[dict[str, Any], ...] = (
        {"verifier": "inventory", "version": "1", "status": "ok", "detail": "", "findings": 0},
        {
            "verifier": "vulnerabilities",
            "version": version_for(0),
            "status": "ok",
            "detail": "",
            "findings": 0,
        },
        {"verifier": "config-sanity", "version": "1", "status": "ok", "detail": "", "findings": 1},
    )
    return DecisionRecord(
        state=State.PASSED,
        reasons=(),
        policy=POLICY.name,
        policy_version=POLICY.version,
        data_versions={o["verifier"]: o["version"] for o in outcomes},
        outcomes=outcomes,
        findings=(CONFIG_FINDING,),
    )


async def seed(db: Any, digest: str, inv: ImageInventory | None, repo: str = REPO) -> None:
    """Store ``inv`` (unless None) and a :func:`passed` verdict for ``repo@digest``."""
    if inv is not None:
        await DbInventoryStore(db).store(repo, digest, inv)
    async with db() as session, session.begin():
        await verdicts.record_decision(session, repo, digest, passed())


async def imported(db: Any, *records: Advisory) -> ImportResult:
    """Import ``records`` into the advisory store, as ``gatekeeper advisories import`` does."""
    return await DbAdvisoryStore(db).import_advisories(list(records), "test")


class Recorder:
    """A ``publish`` callback that keeps the verdict changes it is given, in order."""

    def __init__(self) -> None:
        self.seen: list[VerdictChange] = []

    async def __call__(self, change: VerdictChange) -> None:
        self.seen.append(change)


async def state_of(db: Any, digest: str = DIGEST, repo: str = REPO) -> verdicts.VerdictView:
    """The stored verdict of ``repo@digest``, which must exist."""
    async with db() as session:
        found = await verdicts.get(session, repo, digest)
    assert found is not None
    return found
