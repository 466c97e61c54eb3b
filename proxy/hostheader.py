"""The ``Host`` header, when it decides where clients are sent next.

Without ``public_url`` the gatekeeper writes the URLs it hands out (upload ``Location``,
pagination ``Link``, the token challenge's ``realm``) on the host the client used, which is
client input: ``Host: evil.example"/,x="y`` once ended up inside ``WWW-Authenticate`` as an
extra challenge parameter, and in ``Location``. So a ``Host`` that is not ``host[:port]`` (a DNS
name or IPv4 address, or an IPv6 address in brackets, and a port from 1 to 65535) is refused
with 400 before any handler runs; nothing of it is echoed. With ``public_url`` set the header
is not used at all.

Whatever reaches a challenge is also written as an escaped quoted-string (:func:`quoted`), so a
value no check foresaw still cannot end the string it sits in.
"""

from __future__ import annotations

import ipaddress
import logging
import re

from aiohttp import web

from config.settings import Settings
from oci.errors import Code, OCIError
from proxy.errors import Handler

log = logging.getLogger("gatekeeper")

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?:(?P<name>{_LABEL}(?:\.{_LABEL})*\.?)|\[(?P<ip6>[0-9A-Fa-f:.]{{2,45}})\])")
_PORT = re.compile(r"[0-9]{1,5}")
MAX_HOST_LENGTH = 261
"""A 253-character DNS name, a colon and a port."""


def valid_host(value: str) -> bool:
    """``host`` or ``host:port`` as a client may name the gatekeeper, nothing else."""
    if not value or len(value) > MAX_HOST_LENGTH or not value.isascii():
        return False
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[: end + 1], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return False
            port = rest[1:]
    elif ":" in value:
        host, _, port = value.rpartition(":")
    match = _HOST.fullmatch(host)
    if match is None:
        return False
    if match["ip6"] is not None:
        try:
            ipaddress.IPv6Address(match["ip6"])
        except ValueError:
            return False
    return port is None or (_PORT.fullmatch(port) is not None and 0 < int(port) < 65536)


def checked_host(request: web.BaseRequest) -> str:
    """The request's ``Host``, or the 400 for one that is not ``host[:port]``."""
    host = request.host
    if not valid_host(host):
        raise OCIError(
            Code.REQUEST_MALFORMED,
            "the Host header is not a valid host[:port]; the gatekeeper writes the URLs it "
            "returns (uploads, pagination, the token realm) on that host",
            {"reason": "Host"},
        )
    return host


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a malformed ``Host`` before any handler (or the auth challenge) can use it; in
    the app only while ``public_url`` is unset."""
    checked_host(request)
    return await handler(request)


def quoted(value: str) -> str:
    """``value`` as the inside of an HTTP quoted-string: backslash and quote escaped, control
    and non-ASCII characters percent-encoded (they may not appear in one at all)."""
    out: list[str] = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\t" or " " <= char <= "~":
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode())
    return "".join(out)


def warn_if_host_derived(settings: Settings) -> None:
    """Say so at start-up when client-chosen ``Host`` headers decide the URLs handed out, on an
    address other machines reach."""
    if settings.public_url is not None or _loopback(settings.host):
        return
    log.warning(
        "public_url is not set and the gatekeeper listens on %s, which is not a loopback "
        "address: upload Location URLs, pagination links and the token realm are written on "
        "each request's Host header (checked to be host[:port]); set public_url to the URL "
        "clients use",
        settings.listen,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
