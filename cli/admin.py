"""``gatekeeper quarantine ...`` and ``gatekeeper policy test|reevaluate``: the admin API from a
terminal.

These commands always speak the admin API, so the same checks, refusals, access-log rows and
webhooks follow whichever way they reach it (:func:`endpoint` decides, first match wins):

1. ``--config FILE``: the API served inside the command over that settings file's database
   (``cli/local.py``), for an admin on the gatekeeper's machine;
2. ``--url`` / ``--token``, or ``$GATEKEEPER_ADMIN_URL`` / ``$GATEKEEPER_ADMIN_TOKEN``: a running
   gatekeeper (any replica) at that URL (default http://127.0.0.1:5000); the token is the
   admin token, or the one ``gatekeeper login`` stored for that URL (prefer the variable to
   ``--token``: a command line is visible to other users);
3. ``$GATEKEEPER_CONFIG``: as 1, with that file;
4. the login ``gatekeeper login`` stored (``cli/login.py``).

Over https, ``--ca-file`` (or ``$GATEKEEPER_CA_FILE``) names the PEM file of the CA that signed
the gatekeeper's certificate, for a private CA; without it the system's trusted CAs are used.

Tables for people, ``--json`` for scripts. Exit status: 0 done, 1 the gatekeeper refused (its
message says why), 2 bad usage, 3 the gatekeeper could not be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import ssl
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cli.config import CONFIG_ENV, config_path, settings_for
from cli.local import Endpoint, LocalApiError, local_admin_api
from cli.login import ADMIN_URL_ENV, DEFAULT_URL, load_login
from config.durations import DurationError, positive_duration
from config.text import check_plain, visible
from proxy.admin.releases import MAX_RELEASE, ReleaseTermError, release_end
from verifiers.lifecycle import State

API = "/admin/api/v1"


class CommandError(Exception):
    """A failure to report in one line, with the exit status it maps to."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    """The admin API over httpx; every failure becomes a CommandError with a clear message."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        label: str = "",
        ca_file: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.label = label or self.url
        """How messages name the gatekeeper: its URL, or the settings file."""
        self._http = httpx.Client(
            base_url=self.url + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
            verify=trust(ca_file),
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, json=body, params=query)
        except httpx.TimeoutException as exc:
            raise CommandError(f"{self.label} did not answer in time ({exc})", 3) from exc
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach the gatekeeper at {self.label}: {exc}", 3) from exc
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.is_success and data is not None:
            return data
        raise CommandError(_describe_failure(resp, data))


def trust(ca_file: str | None) -> ssl.SSLContext | bool:
    """What to verify the gatekeeper's certificate against: the CA in ``ca_file`` (a private
    CA), else the system's trusted CAs."""
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot use the CA file {ca_file}: {exc}", 2) from exc


def _describe_failure(resp: httpx.Response, data: Any) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and "message" in error:
        hint = ""
        if resp.status_code == 401 and error.get("code") == "UNAUTHORIZED":
            hint = " (check --token or GATEKEEPER_ADMIN_TOKEN, or run `gatekeeper login`)"
        return f"{error['message']}{hint} [HTTP {resp.status_code} {error.get('code', '')}]"
    return (
        f"unexpected answer from {resp.request.url}: HTTP {resp.status_code} "
        f"{resp.text[:200]!r} (is --url a gatekeeper?)"
    )


def image_path(ref: str, action: str = "") -> str:
    """``/images/REPO@DIGEST[/action]``; the server validates the reference."""
    if "@" not in ref:
        raise CommandError(f"expected REPOSITORY@DIGEST, got {ref!r}", 2)
    return f"/images/{quote(ref, safe='/@:')}" + (f"/{action}" if action else "")


def parse_moment(text: str) -> datetime:
    """An ISO 8601 time with its zone offset (``2030-01-31T12:00:00Z``, ``...-10:00``)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no zone offset (for example 2030-01-31T12:00:00Z or ...+02:00)"
        )
    return moment


def parse_duration(text: str) -> float:
    """A positive duration in ``config/durations.py``'s grammar (``90s``, ``1h30m``), as
    seconds; argparse shows the message of a bad one next to the option's name."""
    try:
        return positive_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- output --------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows as aligned columns; every cell through ``visible``, since reasons, actors and
    names came from requests and admins (an escape sequence must not reach the terminal)."""
    cells = [["-" if c is None else visible(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def plain_text(text: str) -> str:
    """``--reason`` and ``--actor``: refused here, with the option's name, when the server
    would refuse them (control or bidirectional characters)."""
    try:
        return check_plain(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _short(text: Any, width: int = 60) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= width else value[: width - 3] + "..."


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _ref(item: dict[str, Any]) -> str:
    return f"{item['repository']}@{item['digest']}"


# -- commands ------------------------------------------------------------------------------


def cmd_list(client: AdminClient, args: argparse.Namespace) -> None:
    params = {"state": args.state, "repository": args.repository, "limit": args.limit}
    images = client.call("GET", "/images", params=params)["images"]
    if args.json:
        return print_json(images)
    if not images:
        return print("no images match")
    print_table(
        ("image", "state", "updated", "reason"),
        [
            (_ref(v), v["effective_state"], _when(v["updated_at"]), _short("; ".join(v["reasons"])))
            for v in images
        ],
    )


def cmd_show(client: AdminClient, args: argparse.Namespace) -> None:
    v = client.call("GET", image_path(args.image))
    if args.json:
        return print_json(v)
    print(f"image:    {visible(_ref(v))}")
    print(f"state:    {v['effective_state']}{'' if v['pullable'] else ' (cannot be pulled)'}")
    print(f"decided:  {_when(v['decided_at'])} by policy {visible(v['policy'] or '-')}")
    origin = f" (images from {visible(v['origin'])})" if v.get("origin") else ""
    print(f"applies:  policy {visible(v['applicable_policy']['name'])}{origin}")
    if v["state"] == "released":
        until = f" until {_when(v['release_expires'])}" if v["release_expires"] else ""
        print(f"released: by {visible(v['released_by'])}{until}: {visible(v['release_reason'])}")
    for reason in v["reasons"]:
        print(f"  - {visible(reason)}")
    if v["findings"]:
        print("\nfindings:")
        print_table(
            ("severity", "verifier", "rule", "title"),
            [
                (f["severity"], f["verifier"], f["rule_id"], _short(f["title"]))
                for f in v["findings"]
            ],
        )
    if v["outcomes"]:
        print("\nverifiers:")
        print_table(
            ("verifier", "version", "status", "detail"),
            [
                (o["verifier"], o["version"], o["status"], _short(o["detail"]))
                for o in v["outcomes"]
            ],
        )
    print("\nhistory:")
    print_table(
        ("time", "event", "change", "actor", "reason"),
        [
            (
                _when(e["time"]),
                e["event"],
                f"{e['old_state'] or '-'} -> {e['new_state']}",
                e["actor"],
                _short(e["reason"]),
            )
            for e in v["history"]
        ],
    )


def expiry_fields(args: argparse.Namespace) -> dict[str, Any]:
    """``--expires-in`` / ``--expires-at`` as the API's fields, held to the release cap here
    too (the server checks as well; checking here names the option the operator typed)."""
    try:
        end = release_end(datetime.now(UTC), seconds=args.expires_in, at=args.expires_at)
    except ReleaseTermError as exc:
        option = "--expires-in" if args.expires_in is not None else "--expires-at"
        raise CommandError(f"{option} {exc}", 2) from exc
    if args.expires_in is not None:
        return {"expires_in_seconds": args.expires_in}
    return {"expires_at": end.isoformat()} if end is not None else {}


def cmd_release(client: AdminClient, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"reason": args.reason, "actor": args.actor, **expiry_fields(args)}
    v = client.call("POST", image_path(args.image, "release"), body=drop_none(body))
    if args.json:
        return print_json(v)
    until = f" until {v['release_expires']}" if v["release_expires"] else ""
    print(visible(f"released {_ref(v)}{until} (by {v['released_by']})"))


def cmd_requarantine(client: AdminClient, args: argparse.Namespace) -> None:
    body = drop_none({"reason": args.reason, "actor": args.actor})
    v = client.call("POST", image_path(args.image, "requarantine"), body=body)
    if args.json:
        return print_json(v)
    print(f"re-quarantined {visible(_ref(v))}")


def cmd_rescan(client: AdminClient, args: argparse.Namespace) -> None:
    body = drop_none({"reason": args.reason, "actor": args.actor})
    if args.image:
        result = client.call("POST", image_path(args.image, "rescan"), body=body)
    else:
        if args.repository:
            body["repository"] = args.repository
        result = client.call("POST", "/rescan", body=body)
    if args.json:
        return print_json(result)
    scope = visible(args.image or args.repository or "every known image")
    print(
        f"queued {result['queued']} rescan(s) of {scope}; verdicts stay as they are until the "
        "new results land"
    )
    if not args.image:
        print("(for a spread, resumable, cancellable run with progress: gatekeeper rescan)")


def cmd_policy_test(client: AdminClient, args: argparse.Namespace) -> None:
    body = {"policies": load_policies(Path(args.file))} if args.file else {}
    result = client.call("POST", "/policy/test", body=body)
    if args.json:
        return print_json(result)
    source = visible(args.file or "the configured policies")
    skipped = result["skipped_pending"] + result["skipped_unreadable"]
    print(
        f"{result['examined']} verdicts checked against {source} ({skipped} skipped: pending "
        "or unreadable); nothing was changed"
    )
    if not result["changes"]:
        return print("no verdict would change")
    print(f"{len(result['changes'])} would change:")
    print_table(
        ("image", "now", "would be", "policy", "reasons"),
        [
            (_ref(c), c["current"], c["would_be"], c["policy"], _short("; ".join(c["reasons"])))
            for c in result["changes"]
        ],
    )


def cmd_policy_reevaluate(client: AdminClient, args: argparse.Namespace) -> None:
    body = drop_none({"repository": args.repository, "reason": args.reason, "actor": args.actor})
    result = client.call("POST", "/policy/reevaluate", body=body)
    if args.json:
        return print_json(result)
    print(
        f"{result['reevaluated']} verdicts decided under another policy version were decided "
        f"again from stored findings in {result['seconds']:.2f}s: {result['changed']} changed "
        f"({result['quarantined']} newly quarantined), {result['notified']} notified, "
        f"{result['skipped_unreadable']} unreadable; {result.get('queued', 0)} queued for a full "
        "verification"
    )


def load_policies(path: Path) -> list[Any]:
    """The ``[[policies]]`` of a TOML file (a whole settings file works too)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}", 2) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"{path}: not valid TOML: {exc}", 2) from exc
    policies = data.get("policies")
    if not isinstance(policies, list):
        raise CommandError(f"{path}: no [[policies]] tables", 2)
    # TOML has native datetimes (waiver expiries); JSON needs them as ISO 8601 text.
    return list(json.loads(json.dumps(policies, default=_iso)))


def _iso(value: object) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


# -- wiring --------------------------------------------------------------------------------

Command = Callable[[AdminClient, argparse.Namespace], None]
NOWHERE = (
    "no gatekeeper to act on: log in as an admin with `gatekeeper login` (its admin API), "
    "or pass --config FILE (or set GATEKEEPER_CONFIG) to act on that settings file's "
    "database, or --url with GATEKEEPER_ADMIN_TOKEN (or --token)"
)


@contextlib.contextmanager
def endpoint(
    args: argparse.Namespace,
    env: Mapping[str, str],
    transport: httpx.BaseTransport | None = None,
) -> Iterator[Endpoint]:
    """Where this command reaches the admin API, open for the duration of the block (the
    order is the module docstring's)."""
    if args.config and (args.url or args.token):
        raise CommandError("give a settings file (--config) or a gatekeeper (--url), not both", 2)
    url = args.url or env.get(ADMIN_URL_ENV)
    token = args.token or env.get("GATEKEEPER_ADMIN_TOKEN")
    stored = load_login(env)
    if not args.config and (url or token or not env.get(CONFIG_ENV)):
        url = (url or (stored.url if stored else None) or DEFAULT_URL).rstrip("/")
        if not token and stored is not None and stored.url == url:
            if stored.expired():
                raise CommandError(
                    f"the login to {url} as {stored.user} expired at {stored.expires_at[:19]} "
                    "UTC: run `gatekeeper login` again",
                    2,
                )
            token = stored.token
        if not token:
            raise CommandError(NOWHERE, 2)
        yield Endpoint(url, token, transport, url)
        return
    path = config_path(args, env)
    assert path is not None
    settings = settings_for(args, env)
    if getattr(args, "actor", None) is None:  # the person, after the admin-token principal
        args.actor = _login_name()
    try:
        with local_admin_api(settings, str(path)) as local:
            yield local
    except LocalApiError as exc:
        raise CommandError(f"cannot open the database of {path}: {exc}", 3) from exc


def _login_name() -> str:
    """This machine's name for the person running the command (``local`` when it has none,
    as in a container without a passwd entry)."""
    try:
        return check_plain(getpass.getuser())
    except (OSError, KeyError, ValueError):
        return "local"


def run_command(
    command: Command,
    args: argparse.Namespace,
    env: Mapping[str, str],
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Run one command and map its failure to a message and an exit status; ``env`` and
    ``transport`` are injectable so tests touch neither the environment nor the network."""
    ca_file = getattr(args, "ca_file", None) or env.get("GATEKEEPER_CA_FILE")
    try:
        with (
            endpoint(args, env, transport) as where,
            AdminClient(
                where.url,
                where.token,
                transport=where.transport,
                label=where.label,
                ca_file=ca_file,
            ) as client,
        ):
            command(client, args)
    except CommandError as exc:
        print(f"gatekeeper: {visible(exc)}", file=sys.stderr)
        return exc.status
    return 0


def run_admin(args: argparse.Namespace) -> int:
    return run_command(args.admin_command, args, os.environ)


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        help=f"gatekeeper URL (default $GATEKEEPER_ADMIN_URL, the stored login, or {DEFAULT_URL})",
    )
    common.add_argument(
        "--token", help="admin token (default $GATEKEEPER_ADMIN_TOKEN, or the stored login)"
    )
    common.add_argument(
        "--config",
        metavar="FILE",
        help=f"act on this settings file's database instead of a running gatekeeper's API "
        f"(default ${CONFIG_ENV} when no URL or token is given)",
    )
    common.add_argument(
        "--ca-file",
        help="PEM file of the CA that signed the gatekeeper's certificate, for https with a "
        "private CA (default $GATEKEEPER_CA_FILE, else the system's CAs)",
    )
    common.add_argument("--json", action="store_true", help="JSON output for scripts")
    return common


def acting_options(parser: argparse.ArgumentParser, reason_required: bool) -> None:
    parser.add_argument(
        "--reason", type=plain_text, required=reason_required, help="why (recorded in the log)"
    )
    parser.add_argument(
        "--actor",
        type=plain_text,
        help="who you are, recorded after the principal (USER:ACTOR, admin-token:ACTOR); with "
        "--config, default your login name",
    )


def expiry_options(parser: argparse.ArgumentParser) -> None:
    """``--expires-in`` or ``--expires-at`` (a release, a waiver), read by :func:`expiry_fields`."""
    until = parser.add_mutually_exclusive_group()
    until.add_argument(
        "--expires-in",
        type=parse_duration,
        help=f"e.g. 90s, 30m, 1h, 2d (at most {MAX_RELEASE.days}d)",
    )
    until.add_argument(
        "--expires-at",
        type=parse_moment,
        help="an ISO 8601 time with its offset, e.g. 2030-01-31T12:00:00Z",
    )


def add_admin_commands(sub: Any) -> Any:
    """Add ``quarantine`` and ``policy`` to the ``gatekeeper`` command; returns the
    ``quarantine`` subcommands, for the waiver commands (``cli.waivers``)."""
    common = common_options()
    quarantine = sub.add_parser("quarantine", help="inspect and override image verdicts")
    q = quarantine.add_subparsers(dest="quarantine_command", required=True)

    p = q.add_parser("list", parents=[common], help="list verdicts")
    p.add_argument("--state", choices=[s.value for s in State])
    p.add_argument("--repository", "-r")
    p.add_argument("--limit", "-n", type=int, default=100)
    p.set_defaults(func=run_admin, admin_command=cmd_list)

    p = q.add_parser("show", parents=[common], help="one verdict: findings and history")
    p.add_argument("image", metavar="REPO@DIGEST")
    p.set_defaults(func=run_admin, admin_command=cmd_show)

    p = q.add_parser("release", parents=[common], help="let a quarantined image be pulled")
    p.add_argument("image", metavar="REPO@DIGEST")
    acting_options(p, reason_required=True)
    expiry_options(p)
    p.set_defaults(func=run_admin, admin_command=cmd_release)

    p = q.add_parser("requarantine", parents=[common], help="withdraw a release or a pass")
    p.add_argument("image", metavar="REPO@DIGEST")
    acting_options(p, reason_required=True)
    p.set_defaults(func=run_admin, admin_command=cmd_requarantine)

    p = q.add_parser(
        "rescan",
        parents=[common],
        help="verify again now, over the admin API (verdicts stay meanwhile)",
        description="Queue verifications at once through the admin API (audited per image). "
        "For the whole fleet prefer `gatekeeper rescan`: the same verifications as a run that "
        "is spread over time, resumes after restarts, can be cancelled and shows progress.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("image", nargs="?", metavar="REPO@DIGEST")
    target.add_argument("--repository", "-r", help="every image of one repository, at once")
    target.add_argument("--all", action="store_true", help="every known image, at once")
    acting_options(p, reason_required=False)
    p.set_defaults(func=run_admin, admin_command=cmd_rescan)

    policy = sub.add_parser("policy", help="policy tools")
    pol = policy.add_subparsers(dest="policy_command", required=True)
    p = pol.add_parser("test", parents=[common], help="dry-run: which verdicts would change")
    p.add_argument("--file", "-f", help="TOML with [[policies]] (default: the configured ones)")
    p.set_defaults(func=run_admin, admin_command=cmd_policy_test)
    p = pol.add_parser(
        "reevaluate",
        parents=[common],
        help="apply the configured policies now to verdicts decided under other versions",
        description="Decide again, from stored findings (no layer is read), every verdict whose "
        "policy version differs from the policy that now matches its repository; the gatekeeper "
        "also does this at start-up. Preview with `gatekeeper policy test`.",
    )
    p.add_argument("--repository", "-r", help="only this repository's verdicts")
    acting_options(p, reason_required=False)
    p.set_defaults(func=run_admin, admin_command=cmd_policy_reevaluate)
    return q
