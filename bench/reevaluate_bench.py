"""Time to re-evaluate stored images after an advisory import (issue 5's goal: 10,000 images in
under 10 s), without any layer, registry or upstream.

Seeds a fresh database through the storage functions the gatekeeper itself uses: ``--images``
verified images, each with an inventory of ``--min-packages`` to ``--max-packages`` packages
drawn from one shared pool (Debian 12 binaries with their source packages, PyPI, npm and Go
modules; every image has ``libc6`` from source ``glibc``, as real Debian images do), a passed
verdict with the outcomes and findings a verification stores, and as the existing advisory data
the whole real Go vulnerability database (4,291 records, ``tests/data/osv``), so the
store is not trivially small. Then it imports ``--advisories`` new OSV records, one of them on
``glibc`` so that *every* image is affected, and times ``after_advisory_import``: the whole
re-evaluation, database writes included. A policy change (every verdict decided again from its
stored findings) is timed too.

Usage: ``python -m bench.reevaluate_bench [--images 10000] [--results-dir DIR]``. Progress on
stderr, the report on stdout, a JSON result in ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.policy import Policy
from services.reevaluate import Report, after_advisory_import, after_policy_change
from storage.advisories import DbAdvisoryStore
from storage.db import create_engine, sessionmaker, upgrade
from storage.inventory import DbInventoryStore
from storage.verdicts import DecisionRecord, FindingRecord, record_decision
from verifiers.lifecycle import State
from verifiers.scan.model import ImageInventory, OsRelease, Package
from verifiers.vulns.assess import version_for
from verifiers.vulns.load import read_path
from verifiers.vulns.osv import Advisory

ROOT = Path(__file__).resolve().parents[1]
GO_DB = ROOT / "tests" / "data" / "osv" / "go-vulndb-all.zip"
GOAL_SECONDS = 10.0
GOAL_IMAGES = 10_000
DEBIAN = OsRelease("debian", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)")
POLICY = Policy(
    name="bench",
    repositories=["*"],
    require=["inventory", "vulnerabilities"],
    severity_threshold="high",
)


@dataclass(frozen=True)
class Pool:
    """The packages images are drawn from; shared, so one advisory hits many images."""

    debian: tuple[Package, ...]
    pypi: tuple[Package, ...]
    npm: tuple[Package, ...]
    go: tuple[Package, ...]
    libc: Package


def say(started: float, message: str) -> None:
    print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def make_pool(rng: random.Random, go_modules: list[str]) -> Pool:
    def deb(name: str, source: str, version: str) -> Package:
        return Package(
            "deb",
            name,
            version,
            "var/lib/dpkg/status",
            layer="sha256:" + "1" * 64,
            source_name=source,
            arch="amd64",
            purl=f"pkg:deb/debian/{name}@{version}?arch=amd64&distro=debian-12",
        )

    debian = tuple(
        deb(f"lib{source}{n}", source, f"{rng.randint(1, 9)}.{rng.randint(0, 30)}-{n + 1}")
        for source in (f"src{i}" for i in range(600))
        for n in range(rng.randint(1, 4))
    )
    pypi = tuple(
        Package(
            "pypi",
            f"Py_Pkg.{i}",
            f"{rng.randint(0, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            f"usr/lib/python3/dist-packages/py_pkg_{i}.dist-info/METADATA",
            purl=f"pkg:pypi/py-pkg-{i}",
        )
        for i in range(600)
    )
    npm = tuple(
        Package(
            "npm",
            f"npm-pkg-{i}",
            f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            f"app/node_modules/npm-pkg-{i}/package.json",
            purl=f"pkg:npm/npm-pkg-{i}",
        )
        for i in range(600)
    )
    go = tuple(
        Package("golang", module, f"v0.{rng.randint(0, 9)}.0", "app/server", purl="pkg:golang/x")
        for module in go_modules
    )
    libc = deb("libc6", "glibc", "2.36-9+deb12u4")
    return Pool(debian, pypi, npm, go, libc)


def image_inventory(rng: random.Random, pool: Pool, low: int, high: int) -> ImageInventory:
    size = rng.randint(low, high)
    counts = (int(size * 0.6), int(size * 0.2), int(size * 0.15))
    chosen = [pool.libc]
    chosen += rng.sample(pool.debian, min(counts[0], len(pool.debian)))
    chosen += rng.sample(pool.pypi, counts[1])
    chosen += rng.sample(pool.npm, counts[2])
    chosen += rng.sample(pool.go, min(size - 1 - sum(counts), len(pool.go)))
    return ImageInventory(os_release=DEBIAN, packages=tuple(chosen))


def passed_record(data_version: int) -> DecisionRecord:
    """What a verification that found nothing blocking stores."""
    outcomes: tuple[dict[str, Any], ...] = (
        {"verifier": "inventory", "version": "1", "status": "ok", "detail": "", "findings": 0},
        {
            "verifier": "vulnerabilities",
            "version": version_for(data_version),
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
        data_versions={str(o["verifier"]): o["version"] for o in outcomes},
        outcomes=outcomes,
        findings=(
            FindingRecord("config-sanity", "config.no-user", "low", "image runs as root", "User"),
        ),
    )


def advisory(ecosystem: str, name: str, fixed: str | None, severity: str) -> Advisory:
    events: list[dict[str, str]] = [{"introduced": "0"}]
    if fixed is not None:
        events.append({"fixed": fixed})
    ident = f"BENCH-{hashlib.sha256(f'{ecosystem}/{name}'.encode()).hexdigest()[:10]}"
    return Advisory.from_json(
        {
            "id": ident,
            "modified": "2026-01-01T00:00:00Z",
            "summary": f"synthetic advisory for {name}",
            "affected": [
                {
                    "package": {"ecosystem": ecosystem, "name": name},
                    "ranges": [{"type": "ECOSYSTEM", "events": events}],
                }
            ],
            "database_specific": {"severity": severity},
        }
    )


def new_advisories(rng: random.Random, pool: Pool, count: int) -> list[Advisory]:
    """``count`` records: glibc (every image), then Debian sources, PyPI and npm packages."""
    found = [advisory("Debian:12", "glibc", "2.36-9+deb12u7", "CRITICAL")]
    sources = sorted({p.source_name for p in pool.debian})
    for n in range(count - 1):
        fixed = None if n % 4 == 0 else "99.0"
        severity = rng.choice(["HIGH", "CRITICAL", "MODERATE"])
        kind = n % 3
        if kind == 0:
            found.append(advisory("Debian:12", rng.choice(sources), fixed, severity))
        elif kind == 1:
            found.append(advisory("PyPI", rng.choice(pool.pypi).name, fixed, severity))
        else:
            found.append(advisory("npm", rng.choice(pool.npm).name, fixed, severity))
    return found


@dataclass(frozen=True)
class ReevaluateOptions:
    """One run's parameters (``bench.cli`` reads them from the command line)."""

    images: int
    min_packages: int
    max_packages: int
    advisories: int
    go_db: Path | None
    database_url: str | None
    seed: int
    full_rewrite: bool
    results_dir: Path


async def seed(
    db: Any, rng: random.Random, pool: Pool, args: ReevaluateOptions, record: DecisionRecord
) -> tuple[list[tuple[str, str]], int]:
    """``args.images`` images with their inventories and a passed verdict; their keys and the
    number of packages stored."""
    inventories = DbInventoryStore(db)
    packages = 0
    keys: list[tuple[str, str]] = []
    for start in range(0, args.images, 500):
        batch = []
        for n in range(start, min(start + 500, args.images)):
            digest = "sha256:" + hashlib.sha256(b"image-%d" % n).hexdigest()
            inv = image_inventory(rng, pool, args.min_packages, args.max_packages)
            packages += len(inv.packages)
            batch.append((f"bench/app{n % 200}", digest, inv))
            keys.append((f"bench/app{n % 200}", digest))
        await inventories.store_many(batch)
        async with db() as session, session.begin():
            for repository, digest, _ in batch:
                await record_decision(session, repository, digest, record)
    return keys, packages


async def run(args: ReevaluateOptions, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    rng = random.Random(args.seed)
    url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        store = DbAdvisoryStore(db)
        go = [a for a in read_path(args.go_db) if isinstance(a, Advisory)] if args.go_db else []
        baseline = await store.import_advisories(go, "go-vulndb") if go else None
        data_version = baseline.data_version if baseline else 0
        say(started, f"advisory store: {len(go)} Go records (data version {data_version})")
        modules = sorted({a.name for r in go for a in r.affected if a.ecosystem == "Go"})[:300]
        pool = make_pool(rng, modules or [f"example.com/mod{i}" for i in range(300)])
        keys, packages = await seed(db, rng, pool, args, passed_record(data_version))
        say(
            started,
            f"seeded {args.images} images, {packages} packages ({packages / args.images:.0f} each)",
        )
        if data_version:
            # The findings a verification against the Go database would have stored (the same
            # matching code), so the timed import starts from a realistic state.
            await after_advisory_import(db, [POLICY], keys, data_version)
            say(started, f"baseline findings stored (data version {data_version})")

        records = new_advisories(rng, pool, args.advisories)
        t0 = time.perf_counter()
        result = await store.import_advisories(records, "bench")
        affected = sorted(await store.images_with(result.packages))
        import_seconds = time.perf_counter() - t0
        say(started, f"imported {len(records)} advisories: {len(affected)} images affected")
        report = await after_advisory_import(
            db, [POLICY], affected, result.data_version, changed=result.advisories
        )
        say(started, f"re-evaluated {report.examined} images in {report.seconds:.2f}s")
        full = None
        if args.full_rewrite:
            full = await after_advisory_import(db, [POLICY], affected, result.data_version)
            say(started, f"full re-match and rewrite: {full.examined} in {full.seconds:.2f}s")
        stricter = POLICY.model_copy(update={"severity_threshold": "medium"})
        policy_report = await after_policy_change(db, [stricter])
        say(started, f"policy change: {policy_report.examined} in {policy_report.seconds:.2f}s")
    finally:
        await engine.dispose()
    data = summary(args, packages, len(records), import_seconds, report, policy_report)
    if full is not None:
        data["full_rewrite_seconds"] = round(full.seconds, 3)
    return data


def summary(
    args: ReevaluateOptions,
    packages: int,
    advisories: int,
    import_seconds: float,
    report: Report,
    policy: Report,
) -> dict[str, Any]:
    per_10k = report.seconds * GOAL_IMAGES / max(report.examined, 1)
    return {
        "images": args.images,
        "packages": packages,
        "advisories_imported": advisories,
        "import_seconds": round(import_seconds, 3),
        "reevaluated": report.examined,
        "changed": report.changed,
        "quarantined": report.quarantined,
        "needs_verification": len(report.needs_verification),
        "reevaluate_seconds": round(report.seconds, 3),
        "seconds_per_10k": round(per_10k, 3),
        "goal_seconds": GOAL_SECONDS,
        "ratio_to_goal": round(per_10k / GOAL_SECONDS, 3),
        "policy_change_reevaluated": policy.examined,
        "policy_change_seconds": round(policy.seconds, 3),
    }


def print_report(data: dict[str, Any]) -> None:
    met = "met" if data["ratio_to_goal"] <= 1 else "NOT met"
    print(
        f"{data['images']} images, {data['packages']} packages; {data['advisories_imported']} "
        f"advisories imported in {data['import_seconds']:.2f}s\n"
        f"re-evaluation after the import: {data['reevaluated']} images in "
        f"{data['reevaluate_seconds']:.2f}s ({data['changed']} changed, "
        f"{data['quarantined']} quarantined)\n"
        f"  = {data['seconds_per_10k']:.2f}s per 10,000 images; ratio to the "
        f"{GOAL_SECONDS:g}s goal: {data['ratio_to_goal']:.2f} ({met})\n"
        f"policy change: {data['policy_change_reevaluated']} verdicts re-decided in "
        f"{data['policy_change_seconds']:.2f}s"
    )
    if "full_rewrite_seconds" in data:
        print(f"full re-match, every finding rewritten: {data['full_rewrite_seconds']:.2f}s")


def main(args: ReevaluateOptions) -> int:
    with tempfile.TemporaryDirectory(prefix="reevaluate-bench-") as tmp:
        data = asyncio.run(run(args, Path(tmp)))
    print_report(data)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.results_dir / f"reevaluate-{stamp}.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    from bench.cli import reevaluate_bench

    sys.exit(reevaluate_bench())
