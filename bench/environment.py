"""What the figures were measured on, stored beside them so old results stay interpretable.

The load average is taken at the start of each report: on a shared machine it is the first thing
to check when a ratio moves between runs.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

from bench.nginx import NGINX_BINARY
from tests.support.registry import REGISTRY_BINARY


def describe() -> dict[str, object]:
    """Versions of every program on the measured path, CPU count and load average."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "registry": _first_line([REGISTRY_BINARY, "--version"]),
        "nginx": _first_line([NGINX_BINARY, "-v"]),
        "curl": _first_line(["curl", "--version"]),
        "aiohttp": _package_version("aiohttp"),
        "httpx": _package_version("httpx"),
    }


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
