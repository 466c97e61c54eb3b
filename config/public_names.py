"""The host names clients reach the gatekeeper by, as image references write them.

A cosign signature's ``docker-reference`` must name this registry (``verifiers/registry_names``);
these are the names that count:

* ``public_url`` set: its host, with its port (and also without it, when the port is the
  scheme's default: ``https://registry.example.com`` is ``registry.example.com`` and
  ``registry.example.com:443``);
* ``public_url`` unset: the ``listen`` address (unless it is a wildcard such as ``0.0.0.0``)
  and the loopback names on the listen port, ``localhost:PORT``, ``127.0.0.1:PORT`` and
  ``[::1]:PORT``: the names a client on the gatekeeper's own machine uses. Unset, the
  gatekeeper serves whatever ``Host`` a client sends, but cannot know which of those names
  people sign for; a deployment reached by other names sets ``public_url`` or lists them;
* always, every name in ``public_aliases`` (a DNS alias, the load balancer's name, ...).
"""

from __future__ import annotations

from config.settings import Settings

WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def _with_port(host: str, port: int, default_port: int) -> set[str]:
    return {f"{host}:{port}", host} if port == default_port else {f"{host}:{port}"}


def public_hosts(settings: Settings) -> frozenset[str]:
    """Every ``host`` or ``host:port`` an image reference may use to name this gatekeeper."""
    names: set[str] = {alias.lower() for alias in settings.public_aliases}
    url = settings.public_url
    if url is not None and url.host:
        default = 443 if url.scheme == "https" else 80
        names |= _with_port(url.host.lower(), url.port or default, default)
        return frozenset(names)
    default = 443 if settings.tls_cert else 80
    listen = settings.host.lower()
    hosts = set(LOOPBACK)
    if listen not in WILDCARDS:
        hosts.add(f"[{listen}]" if ":" in listen else listen)
    for host in hosts:
        names |= _with_port(host, settings.port, default)
    return frozenset(names)
