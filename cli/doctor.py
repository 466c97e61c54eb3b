"""``gatekeeper doctor``: check what the gatekeeper depends on and say what to fix
(``proxy/doctor.py`` holds the checks). Exit status: 0 nothing failed (warnings allowed), 1 a
check failed."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from cli.config import add_config, settings_for
from config.text import visible


def cmd_doctor(args: argparse.Namespace) -> int:
    from proxy.doctor import Status, as_json, diagnose

    settings = settings_for(args)
    checks = asyncio.run(diagnose(settings))
    if args.json:
        print(json.dumps([as_json(c) for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            print(f"{check.status.value:<4}  {check.name:<{width}}  {visible(check.detail)}")
            if check.fix:
                print(f"{'':<4}  {'':<{width}}  fix: {visible(check.fix)}")
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def add_doctor_command(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="check the upstream, database, storage, clock, token key and advisory data",
        description="Check what the gatekeeper of these settings depends on: the upstream "
        "registry, the database and its migrations, the registry storage mounted for sendfile, "
        "the clock, the token signing key, the age of the advisory data, and the settings. "
        "Changes nothing. Exit 1 when a check failed.",
    )
    add_config(doctor)
    doctor.add_argument("--json", action="store_true", help="one JSON object per check")
    doctor.set_defaults(func=cmd_doctor)
