"""``gatekeeper prefetch REPO:TAG...``: fetch public images and verify them before the first
developer pulls them, and follow each to its verdict.

Over the admin API (``POST /prefetch``, then ``GET /images/...`` until each is decided), so it
works against any replica and is audited like every admin action: ``--url`` and ``--token``
as for ``gatekeeper quarantine``. One line per event: an image fetched (or why not, naming the
remote), an image decided, and every ``--every`` seconds how many are still being verified.
Exit status: 0 every image may be pulled, 1 one may not (quarantined, not fetched, still
pending at ``--timeout``), 2 bad usage, 3 the gatekeeper could not be reached.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cli.admin import (
    AdminClient,
    CommandError,
    common_options,
    image_path,
    parse_duration,
    plain_text,
    print_json,
    run_admin,
)
from config.references import parse_image_reference
from config.text import visible
from verifiers.lifecycle import PULLABLE, State

DESCRIPTION = (
    "Fetch images through the registry (a registry in proxy mode fetches them from its "
    "remote) and verify them before anyone pulls them, then follow each to its verdict. "
    "Images are REPOSITORY:TAG or REPOSITORY@sha256:..., named as the registry behind the "
    "gatekeeper serves them (library/alpine:3.20). Exit status: 0 every image may be pulled, "
    "1 one may not (quarantined, not fetched, still pending at --timeout), 2 bad usage, "
    "3 the gatekeeper could not be reached."
)


@dataclass
class Waiting:
    """Images fetched and not decided yet, and what became of the others."""

    started: float
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Reference as asked -> the API's answer for it."""
    outcome: dict[str, str] = field(default_factory=dict)
    """Reference -> its verdict's state, or ``not fetched``."""


def cmd_prefetch(
    client: AdminClient,
    args: argparse.Namespace,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    body: dict[str, Any] = {"images": args.images, "again": args.again}
    if args.reason:
        body["reason"] = args.reason
    answer = client.call("POST", "/prefetch", body=body)["images"]
    waiting = Waiting(clock())
    for item in answer:
        _fetched(item, waiting, quiet=args.json)
    if not args.no_wait:
        _follow(client, args, waiting, clock, sleep)
    if args.json:
        print_json([{**i, "final_state": waiting.outcome.get(i["reference"])} for i in answer])
    else:
        _summary(waiting)
    if any(state not in PULLABLE for state in waiting.outcome.values()) or waiting.pending:
        raise CommandError(_failed(waiting), 1)


def _fetched(item: dict[str, Any], waiting: Waiting, *, quiet: bool) -> None:
    reference = item["reference"]
    if item["error"]:
        waiting.outcome[reference] = "not fetched"
        _say(quiet, f"could not fetch {reference}: {item['error']}")
        return
    origin = f", from {item['origin']}" if item["origin"] not in (None, "local") else ""
    short = item["digest"][:19]
    if item["state"] == State.PENDING:
        waiting.pending[reference] = item
        what = "verifying" if item["queued"] else "being verified already"
        _say(quiet, f"fetched {reference} ({short}{origin}): {what}")
    else:
        waiting.outcome[reference] = item["state"]
        _say(quiet, f"fetched {reference} ({short}{origin}): already {item['state']}")


def _follow(
    client: AdminClient,
    args: argparse.Namespace,
    waiting: Waiting,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Poll each pending image until it is decided or ``--timeout`` passes."""
    deadline = waiting.started + args.timeout
    told = clock()
    while waiting.pending and clock() < deadline:
        sleep(args.poll)
        for reference, item in list(waiting.pending.items()):
            verdict = client.call("GET", image_path(f"{item['repository']}@{item['digest']}"))
            state = verdict["effective_state"]
            if state == State.PENDING:
                continue
            del waiting.pending[reference]
            waiting.outcome[reference] = state
            took = f"after {clock() - waiting.started:.0f} s"
            why = "; ".join(verdict["reasons"][:2])
            _say(args.json, f"{reference}: {state} {took}" + (f": {why}" if why else ""))
        if waiting.pending and clock() - told >= args.every:
            told = clock()
            count = len(waiting.pending)
            _say(
                args.json,
                f"... {count} image{'s' if count > 1 else ''} still being verified "
                f"({clock() - waiting.started:.0f} s)",
            )


def _summary(waiting: Waiting) -> None:
    counts: dict[str, int] = {}
    for state in waiting.outcome.values():
        counts[state] = counts.get(state, 0) + 1
    if waiting.pending:
        counts["still pending"] = len(waiting.pending)
    total = sum(counts.values())
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"{total} image{'s' if total != 1 else ''}: {parts}")


def _failed(waiting: Waiting) -> str:
    blocked = [ref for ref, state in waiting.outcome.items() if state not in PULLABLE]
    blocked += list(waiting.pending)
    return "not every image may be pulled: " + ", ".join(blocked)


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(visible(line), flush=True)


def _reference(text: str) -> str:
    try:
        parse_image_reference(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def add_prefetch_command(sub: Any) -> None:
    p = sub.add_parser(
        "prefetch",
        parents=[common_options()],
        help="fetch and verify images before anyone pulls them",
        description=DESCRIPTION,
    )
    p.add_argument("images", nargs="+", type=_reference, metavar="REPO:TAG")
    p.add_argument("--again", action="store_true", help="verify again an image already verified")
    p.add_argument("--no-wait", action="store_true", help="queue the verifications and return")
    p.add_argument(
        "--timeout", type=parse_duration, default=1800.0, help="stop following after (30m)"
    )
    p.add_argument("--every", type=float, default=15.0, help=argparse.SUPPRESS)
    p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--reason", type=plain_text, help="why (recorded in the access log)")
    p.set_defaults(func=run_admin, admin_command=cmd_prefetch)
