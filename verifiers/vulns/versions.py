"""Each ecosystem's own version order, from ``univers``.

OSV ecosystems carry a release suffix (``Debian:12``, ``Alpine:v3.18``); the order depends only
on the part before the colon. An ecosystem we cannot order is reported as ``None`` so the
matcher falls back to the explicit ``versions`` list instead of guessing an order.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from verifiers.vulns.errors import VulnsError

if TYPE_CHECKING:
    from univers import versions as uv


@cache
def _orders() -> dict[str, type[uv.Version]]:
    """Imported on first use: ``univers`` is about 5 MiB resident, and only a process that
    matches advisories needs it (a serving process deciding on stored outcomes does not)."""
    from univers import versions as uv

    return {
        "PyPI": uv.PypiVersion,
        "npm": uv.SemverVersion,
        "Go": uv.GolangVersion,
        "Maven": uv.MavenVersion,
        "Debian": uv.DebianVersion,
        "Ubuntu": uv.DebianVersion,
        "Alpine": uv.AlpineLinuxVersion,
        "AlmaLinux": uv.RpmVersion,
        "Rocky Linux": uv.RpmVersion,
        "Mageia": uv.RpmVersion,
        "openSUSE": uv.RpmVersion,
        "crates.io": uv.SemverVersion,
        "RubyGems": uv.RubygemsVersion,
        "NuGet": uv.NugetVersion,
    }


class VersionError(VulnsError, ValueError):
    """A version string the ecosystem's order cannot parse."""


def order_for(ecosystem: str, range_type: str) -> type[uv.Version] | None:
    """The version class for a range: SEMVER ranges use SemVer whatever the ecosystem."""
    orders = _orders()
    if range_type == "SEMVER":
        return orders["npm"]  # SemVer
    return orders.get(ecosystem.split(":", 1)[0])


def parse(order: type[uv.Version], version: str) -> uv.Version:
    """Parse with ``order``; Go's ``go1.19.8`` toolchain spelling is accepted as ``1.19.8``."""
    orders = _orders()
    go_like = order in (orders["Go"], orders["npm"])
    text = version.removeprefix("go") if go_like else version
    try:
        return order(text)
    except Exception as exc:  # univers raises InvalidVersion, ValueError or TypeError
        raise VersionError(f"{version!r} is not a valid {order.__name__}") from exc
