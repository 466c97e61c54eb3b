"""The benchmarks' command lines: every ``python -m bench.<name>`` option is read here.

The benchmark modules take typed arguments (a settings dataclass, or plain parameters) and
never see ``argv``; each one's ``__main__`` block hands its command line to the function of the
same name here, which parses it and calls the module's ``main``. So ``argparse`` is imported in
one module of ``bench`` (``tests/unit/test_layers.py`` checks it), and a benchmark can be run
from code (the smoke tests, another benchmark) with the same arguments. Each function imports
its benchmark only when called: one benchmark's command line does not load the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def _summary(doc: str | None) -> str:
    """A module docstring's first paragraph."""
    return (doc or "").split("\n\n")[0]


def audit_bench(argv: Sequence[str] | None = None) -> int:
    from bench import audit_bench as bench

    parser = argparse.ArgumentParser(description=_summary(bench.__doc__))
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--preload", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    parser.add_argument("--results-dir", type=Path, default=bench.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    return bench.main(bench.AuditOptions(**vars(args)))


def client_bench(argv: Sequence[str] | None = None) -> int:
    from bench import client_bench as bench

    parser = argparse.ArgumentParser(prog="python -m bench.client_bench", description=bench.__doc__)
    parser.add_argument("--size-mib", type=int, help="layer size (default 1024; --quick: 64)")
    parser.add_argument("--quick", action="store_true", help="small layer")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results-dir", type=Path, default=bench.RESULTS_DIR)
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args(argv)
    settings = bench.ClientBenchSettings(
        size_mib=args.size_mib or (64 if args.quick else 1024),
        repeats=max(1, args.repeats),
        results_dir=args.results_dir,
        keep_workdir=args.keep_workdir,
    )
    return bench.main(settings)


def console_bench(argv: Sequence[str] | None = None) -> int:
    from bench import console_bench as bench

    parser = argparse.ArgumentParser(description=_summary(bench.__doc__))
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--verdicts", type=int, default=10_000)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--sqlite-file",
        type=Path,
        help="keep the SQLite database here; an existing file is measured without seeding",
    )
    parser.add_argument("--results-dir", type=Path, default=bench.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    return bench.main(bench.ConsoleOptions(**vars(args)))


def content_bench(argv: Sequence[str] | None = None) -> int:
    from bench import content_bench as bench

    parser = argparse.ArgumentParser(
        prog="python -m bench.content_bench", description=bench.__doc__
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--keep-image", type=Path, help="build the image here and keep it (reused if there)"
    )
    args = parser.parse_args(argv)
    return bench.main(args.repeats, args.keep_image)


def rss_bench(argv: Sequence[str] | None = None) -> int:
    from bench import rss_bench as bench

    parser = argparse.ArgumentParser(prog="python -m bench.rss_bench", description=bench.__doc__)
    parser.add_argument("--size-mib", type=int, default=64, help="size of the image's layer")
    parser.add_argument("--requests", type=int, default=300, help="manifest GETs per mode")
    parser.add_argument("--modes", default="serve,workers", help="serve,workers")
    args = parser.parse_args(argv)
    return bench.main(args.size_mib, args.requests, args.modes.split(","))


def load_test(argv: Sequence[str] | None = None) -> int:
    from bench import load_test as bench

    parser = argparse.ArgumentParser(prog="python -m bench.load_test", description=bench.__doc__)
    parser.add_argument("--quick", action="store_true", help="5 s, 20 pullers, 4 pushers")
    parser.add_argument("--duration", type=float, help="seconds per target (default 60)")
    parser.add_argument("--pullers", type=int, help="clients pulling (default 200)")
    parser.add_argument("--pushers", type=int, help="clients pushing (default 20)")
    parser.add_argument("--processes", type=int, default=1, help="generator processes")
    parser.add_argument("--images", type=int, default=4, help="seeded images to pull")
    parser.add_argument("--blob-kib", type=int, default=256, help="size of each pulled layer")
    parser.add_argument("--push-kib", type=int, default=64, help="size of each pushed layer")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="cap per target")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--workers", type=int, default=1, help="the gatekeeper's serving processes (default 1)"
    )
    parser.add_argument(
        "--storage",
        choices=("mounted", "streamed"),
        default="mounted",
        help="whether the gatekeeper reads the registry's storage (default: mounted, as "
        "docs/deployment.md recommends) or streams every pull from the registry",
    )
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=bench.RESULTS_DIR)
    args = parser.parse_args(argv)
    quick = args.quick
    options = bench.Options(
        duration=args.duration or (5.0 if quick else 60.0),
        pullers=args.pullers if args.pullers is not None else (20 if quick else 200),
        pushers=args.pushers if args.pushers is not None else (4 if quick else 20),
        processes=args.processes,
        images=args.images,
        blob_kib=args.blob_kib,
        push_kib=args.push_kib,
        max_requests=args.max_requests,
        database=args.database,
        workers=args.workers,
        storage=args.storage,
        keep_workdir=args.keep_workdir,
        results_dir=args.results_dir,
    )
    if min(options.processes, options.images, options.pullers + options.pushers) < 1:
        parser.error("--processes and --images must be >= 1, and there must be clients")
    return bench.main(options)


def proxy_bench(argv: Sequence[str] | None = None) -> int:
    from bench import proxy_bench as bench
    from bench.targets import ALL_TARGETS

    parser = argparse.ArgumentParser(prog="python -m bench.proxy_bench", description=bench.__doc__)
    parser.add_argument("--size-mib", type=int, help="blob size (default 1024; --quick: 64)")
    parser.add_argument("--quick", action="store_true", help="small blob, fewer requests")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, help="manifest GETs (default 2000; --quick: 300)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated")
    parser.add_argument(
        "--gatekeeper-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for both gatekeepers (repeatable), e.g. to change the policy",
    )
    parser.add_argument("--phases", default=",".join(bench.PHASES), help="comma-separated")
    parser.add_argument("--results-dir", type=Path, default=bench.RESULTS_DIR)
    parser.add_argument("--keep-workdir", action="store_true", help="keep storage and logs")
    args = parser.parse_args(argv)
    requests = args.requests or (300 if args.quick else 2000)
    settings = bench.BenchSettings(
        size_mib=args.size_mib or (64 if args.quick else 1024),
        repeats=max(1, args.repeats),
        requests=requests,
        concurrency=args.concurrency,
        warmup=max(args.concurrency, requests // 20),
        targets=_choices(parser, "targets", args.targets, ALL_TARGETS),
        gatekeeper_env=_env_pairs(parser, args.gatekeeper_env),
        phases=_choices(parser, "phases", args.phases, bench.PHASES),
        results_dir=args.results_dir,
        keep_workdir=args.keep_workdir,
    )
    return bench.main(settings)


def _choices(
    parser: argparse.ArgumentParser, option: str, value: str, known: Sequence[str]
) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        parser.error(f"--{option}: unknown or empty {unknown}; known: {', '.join(known)}")
    return chosen


def _env_pairs(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error(f"--gatekeeper-env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def first_pulls(argv: Sequence[str] | None = None) -> int:
    from bench import first_pulls as bench

    parser = argparse.ArgumentParser(prog="python -m bench.first_pulls", description=bench.__doc__)
    parser.add_argument("--count", type=int, default=30, help="first pulls each way (30)")
    parser.add_argument("--gatekeeper-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="serving processes (1)")
    args = parser.parse_args(argv)
    if args.count < 2:
        parser.error("--count must be at least 2 (quartiles)")
    extra = _env_pairs(parser, args.gatekeeper_env)
    return bench.main(args.count, extra, args.database, args.workers)


def reevaluate_bench(argv: Sequence[str] | None = None) -> int:
    from bench import reevaluate_bench as bench

    parser = argparse.ArgumentParser(description=_summary(bench.__doc__))
    parser.add_argument("--images", type=int, default=bench.GOAL_IMAGES)
    parser.add_argument("--min-packages", type=int, default=100)
    parser.add_argument("--max-packages", type=int, default=400)
    parser.add_argument("--advisories", type=int, default=30, help="new records imported")
    go_db = bench.GO_DB if bench.GO_DB.exists() else None
    parser.add_argument("--go-db", type=Path, default=go_db)
    parser.add_argument("--no-go-db", dest="go_db", action="store_const", const=None)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--full-rewrite",
        action="store_true",
        help="also time re-matching every image with no knowledge of what changed (every "
        "stored finding rewritten: the worst case)",
    )
    parser.add_argument("--results-dir", type=Path, default=bench.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if not 1 <= args.min_packages <= args.max_packages or args.images < 1:
        parser.error("need --images >= 1 and 1 <= --min-packages <= --max-packages")
    return bench.main(bench.ReevaluateOptions(**vars(args)))


def scan_bench(argv: Sequence[str] | None = None) -> int:
    from bench import scan_bench as bench

    parser = argparse.ArgumentParser(prog="python -m bench.scan_bench", description=bench.__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one inventory pass")
    parser.add_argument(
        "--keep-image", type=Path, help="build the image here and keep it (reused if there)"
    )
    args = parser.parse_args(argv)
    return bench.main(args.repeats, args.profile, args.keep_image)
