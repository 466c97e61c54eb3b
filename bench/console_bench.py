"""The console's two heavy pages under load of data (issue 14's goal): the quarantine queue and
the access-log search answer in under 200 ms at the 95th percentile, server side, with 10,000
verdicts and 1,000,000 access-log rows, on SQLite and on PostgreSQL.

Seeds a fresh database (the gatekeeper's own migrations, then bulk rows: verdicts over 100
repositories in every state with one to five findings each of four verifiers, two verdict
events each, and an access log of a month of pulls, pushes, refusals and console use by 200
identities), starts the real application in process (``proxy.app.create_app``, no upstream
needed), signs in as a global admin through the sign-in form, and requests each kind of page
(every filter alone, some combined, and a second page through its keyset link) ``--repeat``
times. Server-side time is measured by an outermost middleware around the whole request
(access log, session check, query, rendering); the client's time over loopback is shown too.

Usage: ``python -m bench.console_bench [--database sqlite|postgres] [--verdicts 10000]
[--log-rows 1000000] [--repeat 20]``. Progress on stderr, the report on stdout, a JSON result in
``bench/results/`` (git-ignored); exit status 1 if a page misses the goal.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import Policy
from config.settings import load_settings
from proxy.app import create_app
from proxy.errors import Handler
from storage import identities
from storage.db import create_engine, sessionmaker, upgrade
from storage.models import AccessLog, FindingRow, Verdict, VerdictEvent
from tests.support import postgres

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 200.0
PASSWORD = "bench-password"
POLICY = Policy(name="bench", repositories=["*"], require=["scan"])
VERIFIERS = ("secrets", "vulnerabilities", "hardening", "malware")
SEVERITIES = ("info", "low", "medium", "high", "critical")
STATES = ("quarantined",) * 6 + ("passed",) * 3 + ("released", "pending")
ACTIONS = (
    ("manifest.pull", 30),
    ("blob.pull", 40),
    ("manifest.head", 8),
    ("manifest.push", 4),
    ("blob.push", 8),
    ("auth.token", 6),
    ("ui.queue", 2),
    ("verdict.released", 1),
    ("admin.release", 1),
)
BATCH = 20_000


@dataclass(frozen=True)
class ConsoleOptions:
    """One run's parameters (``bench.cli`` reads them from the command line)."""

    database: str
    verdicts: int
    log_rows: int
    repeat: int
    seed: int
    sqlite_file: Path | None
    """Keep the SQLite database here; an existing file is measured without seeding."""
    results_dir: Path


def say(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)


def digest_of(n: int, salt: str) -> str:
    return "sha256:" + hashlib.sha256(f"{salt}{n}".encode()).hexdigest()


def repositories() -> list[str]:
    return [f"team-{t}/app-{a}" for t in range(20) for a in range(5)]


def verdict_rows(rng: random.Random, count: int, now: datetime) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    names = repositories()
    for n in range(count):
        state = rng.choice(STATES)
        moment = now - timedelta(seconds=rng.randrange(60 * 86400))
        rows.append(
            {
                "repository": names[n % len(names)],
                "digest": digest_of(n, "image"),
                "state": state,
                "reasons": ["1 high (secret.github-token)"] if state == "quarantined" else [],
                "policy": POLICY.name,
                "policy_version": POLICY.version,
                "data_versions": {},
                "outcomes": [{"verifier": "scan", "version": "1", "status": "ok", "detail": ""}],
                "released_by": "bench" if state == "released" else None,
                "release_reason": "bench" if state == "released" else None,
                "release_expires": None,
                "held_by": None,
                "decided_at": moment,
                "updated_at": moment,
                "trigger": None,
            }
        )
    return rows


def finding_rows(rng: random.Random, verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for v in verdicts:
        for k in range(rng.randint(1, 5)):
            rows.append(
                {
                    "repository": v["repository"],
                    "digest": v["digest"],
                    "verifier": rng.choice(VERIFIERS),
                    "rule_id": f"RULE-{rng.randrange(500)}",
                    "severity": rng.choice(SEVERITIES),
                    "title": "a bench finding",
                    "location": f"usr/lib/file{k}",
                    "evidence": "",
                    "fix": None,
                    "blob": digest_of(k, v["digest"]),
                    "origin": None,
                }
            )
    return rows


def event_rows(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for v in verdicts:
        rows.append(_event(v, "pending", None, "pending", v["updated_at"] - timedelta(minutes=1)))
        if v["state"] != "pending":
            rows.append(_event(v, v["state"], "pending", v["state"], v["updated_at"]))
    return rows


def _event(
    v: dict[str, Any], event: str, old: str | None, new: str, at: datetime
) -> dict[str, Any]:
    return {
        "time": at,
        "repository": v["repository"],
        "digest": v["digest"],
        "event": event,
        "old_state": old,
        "new_state": new,
        "actor": "gatekeeper",
        "reason": "bench",
    }


def log_rows(
    rng: random.Random, start: int, count: int, total: int, now: datetime
) -> list[dict[str, Any]]:
    """``count`` rows of a month-long log of ``total``, in time order from row ``start``."""
    names, actions = repositories(), [a for a, weight in ACTIONS for _ in range(weight)]
    rows = []
    for n in range(start, start + count):
        action = rng.choice(actions)
        denied = rng.random() < 0.05
        rows.append(
            {
                "time": now - timedelta(days=30) + timedelta(seconds=30 * 86400 * n / total),
                "request_id": f"{n:032x}",
                "client_addr": f"10.0.{n % 250}.{n % 7}",
                "identity": f"user-{rng.randrange(200)}",
                "method": "GET",
                "path": "/v2/bench",
                "action": action,
                "repository": None if action == "auth.token" else rng.choice(names),
                "reference": "v1",
                "digest": digest_of(rng.randrange(10_000), "image"),
                "status": 403 if denied else 200,
                "bytes_in": 0,
                "bytes_out": 1234,
                "duration_ms": 1.5,
                "upstream_status": 200,
                "decision": "deny" if denied else ("bypass" if rng.random() < 0.01 else "allow"),
                "reason": "quarantined" if denied else None,
                "error_code": "DENIED" if denied else None,
            }
        )
    return rows


async def bulk(db: async_sessionmaker[Any], model: Any, rows: list[dict[str, Any]]) -> None:
    for first in range(0, len(rows), BATCH):
        async with db() as session, session.begin():
            await session.execute(insert(model), rows[first : first + BATCH])


async def seed(db: async_sessionmaker[Any], args: ConsoleOptions, started: float) -> None:
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    verdicts = verdict_rows(rng, args.verdicts, now)
    await bulk(db, Verdict, verdicts)
    await bulk(db, FindingRow, finding_rows(rng, verdicts))
    await bulk(db, VerdictEvent, event_rows(verdicts))
    say(started, f"seeded {len(verdicts)} verdicts with findings and events")
    for first in range(0, args.log_rows, BATCH):
        count = min(BATCH, args.log_rows - first)
        async with db() as session, session.begin():
            await session.execute(
                insert(AccessLog), log_rows(rng, first, count, args.log_rows, now)
            )
        if (first // BATCH) % 10 == 9:
            say(started, f"access log: {first + count} rows")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    async with db() as session, session.begin():
        made = await identities.create(session, "bench-admin", "user", hashed, [], None)
        await identities.grant(session, made.subject, "*", ["admin"], made.id)


def timing(record: dict[str, list[float]]) -> Callable[..., Any]:
    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        begun = time.perf_counter()
        try:
            return await handler(request)
        finally:
            record[request.path_qs].append((time.perf_counter() - begun) * 1000)

    return timed


QUEUE_PAGES = {
    "queue: quarantined, newest first": "/ui/queue",
    "queue: any state": "/ui/queue?state=",
    "queue: severity critical": "/ui/queue?severity=critical",
    "queue: verifier malware, high": "/ui/queue?verifier=malware&severity=high",
    "queue: repository glob team-3/*": "/ui/queue?repository=team-3/*",
    "queue: one repository, oldest first": "/ui/queue?repository=team-7/app-2&order=oldest",
    "queue: changed over 7 days ago": "/ui/queue?age=>7d",
    "queue: by repository": "/ui/queue?order=repository&state=",
}
LOG_PAGES = {
    "log: newest": "/ui/log",
    "log: identity": "/ui/log?identity=user-17",
    "log: repository": "/ui/log?repository=team-4/app-1",
    "log: action": "/ui/log?action=admin.release",
    "log: decision deny": "/ui/log?decision=deny",
    "log: status 403": "/ui/log?status=403",
    "log: a day a week ago": "/ui/log?since={week}&until={day6}",
    "log: identity + action + decision": (
        "/ui/log?identity=user-3&action=manifest.pull&decision=allow"
    ),
    "log: repository + status": "/ui/log?repository=team-9/app-0&status=403",
}
NEXT = re.compile(r'href="([^"]+)" rel="next"')


async def _sign_in(http: aiohttp.ClientSession, base: str) -> None:
    form = await (await http.get(base + "/ui/login")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    signed = await http.post(
        base + "/ui/login",
        data={"username": "bench-admin", "password": PASSWORD, "csrf": token.group(1)},
        allow_redirects=False,
    )
    assert signed.status == 303, await signed.text()


async def _pages(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """The pages measured: the queue's and the log's, dated relative to now, and for every
    fourth of them its second page too."""
    now = datetime.now(UTC)
    week = (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    day6 = (now - timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pages = {**QUEUE_PAGES, **LOG_PAGES}
    for name, path in list(pages.items()):
        pages[name] = path.format(week=week, day6=day6)
    for name, path in list(pages.items())[:: max(1, len(pages) // 4)]:
        text = await (await http.get(base + path)).text()
        following = NEXT.search(text)
        if following:
            pages[f"{name}, page 2"] = following.group(1).replace("&amp;", "&")
    return pages


async def measure(url: str, args: ConsoleOptions) -> dict[str, Any]:
    record: dict[str, list[float]] = defaultdict(list)
    settings = load_settings(
        env={
            "GATEKEEPER_DATABASE_URL": url,
            "GATEKEEPER_UPSTREAM_URL": "http://127.0.0.1:9",
            "GATEKEEPER_AUTH__ENABLED": "true",
            # The token signing key is sealed in the database under a key-encryption key; a
            # throwaway one per run, like the throwaway database.
            "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "GATEKEEPER_VERIFICATION__WORKERS": "0",
            "GATEKEEPER_AUDIT__JSON_LOG": "false",
            "GATEKEEPER_POLICIES": json.dumps([POLICY.model_dump(mode="json")]),
        }
    )
    app = create_app(settings)
    app.middlewares.insert(0, timing(record))
    server = TestServer(app)
    await server.start_server()
    jar = aiohttp.CookieJar(unsafe=True)
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            base = str(server.make_url(""))
            await _sign_in(http, base)
            pages = await _pages(http, base)
            for name, path in pages.items():
                client: list[float] = []
                record.clear()
                for n in range(args.repeat + 2):
                    begun = time.perf_counter()
                    resp = await http.get(base + path)
                    body = await resp.text()
                    assert resp.status == 200, f"{name}: {resp.status} {body[:300]}"
                    if n >= 2:  # two warm-ups
                        client.append((time.perf_counter() - begun) * 1000)
                server_ms = [ms for key, values in record.items() for ms in values][2:]
                rows = body.count("<tr>") - 1
                results[name] = _stats(server_ms, client, rows)
                print(
                    f"  {name:48} p95 {results[name]['server_p95_ms']:7.1f} ms  ({rows} rows)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await server.close()
    return results


def _stats(server_ms: list[float], client_ms: list[float], rows: int) -> dict[str, Any]:
    def p95(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    return {
        "server_p50_ms": round(statistics.median(server_ms), 1),
        "server_p95_ms": round(p95(server_ms), 1),
        "server_max_ms": round(max(server_ms), 1),
        "client_p95_ms": round(p95(client_ms), 1),
        "rows_shown": rows,
    }


async def run(args: ConsoleOptions, workdir: Path, url: str) -> dict[str, Any]:
    started = time.monotonic()
    engine = create_engine(url)
    seeded = args.sqlite_file is not None and args.sqlite_file.exists()
    await upgrade(engine)
    if not seeded:
        await seed(sessionmaker(engine), args, started)
    await engine.dispose()
    say(started, "seeded; measuring")
    pages = await measure(url, args)
    return {
        "database": args.database,
        "verdicts": args.verdicts,
        "log_rows": args.log_rows,
        "repeat": args.repeat,
        "goal_p95_ms": GOAL_MS,
        "pages": pages,
        "met": all(p["server_p95_ms"] < GOAL_MS for p in pages.values()),
    }


def print_report(data: dict[str, Any]) -> None:
    print(
        f"console pages on {data['database']}: {data['verdicts']} verdicts, "
        f"{data['log_rows']} access-log rows, {data['repeat']} requests each; goal: p95 under "
        f"{data['goal_p95_ms']:.0f} ms server side"
    )
    print(f"{'page':56} {'p50':>7} {'p95':>7} {'max':>7} {'client p95':>11} {'rows':>5}")
    for name, p in data["pages"].items():
        flag = "" if p["server_p95_ms"] < data["goal_p95_ms"] else "  MISSED"
        print(
            f"{name:56} {p['server_p50_ms']:7.1f} {p['server_p95_ms']:7.1f} "
            f"{p['server_max_ms']:7.1f} {p['client_p95_ms']:11.1f} {p['rows_shown']:5d}{flag}"
        )
    print("goal met" if data["met"] else "goal MISSED")


def main(args: ConsoleOptions) -> int:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="console-bench-")))
        if args.database == "postgres":
            url = postgres.cluster_url(stack, workdir / "pg")
        else:
            url = f"sqlite+aiosqlite:///{args.sqlite_file or workdir / 'bench.db'}"
        data = asyncio.run(run(args, workdir, url))
    print_report(data)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.results_dir / f"console-{args.database}-{stamp}.json").write_text(
        json.dumps(data, indent=2)
    )
    return 0 if data["met"] else 1


if __name__ == "__main__":
    from bench.cli import console_bench

    sys.exit(console_bench())
