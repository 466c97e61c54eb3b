"""The names this registry is reached by, and what an image reference says about its registry.

A cosign signature names the image it signs as ``critical.identity.docker-reference``:
``registry.example.com/team/app``. The repository part alone does not make it a signature for
this registry: one made for ``other-registry.example/team/app`` and copied here must not count.
The gatekeeper lends the verifiers that need it the set of host names clients use for it
(``config/public_names.py`` derives them from ``public_url``, ``public_aliases`` and ``listen``),
as verifiers get storage ports: after construction, through :class:`KnowsRegistry`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

DOCKER_HUB = "docker.io"
"""The registry a reference without a host means (``team/app`` is ``docker.io/team/app``)."""
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class Reference:
    """An image reference split as the Distribution reference grammar splits it."""

    host: str
    """Registry host, lower-cased, with its port if one was written; ``docker.io`` when the
    reference names none."""
    repository: str
    """The repository path, without tag or digest."""
    explicit_host: bool


def split_reference(reference: str) -> Reference:
    """``host:5000/team/app:tag`` -> (``host:5000``, ``team/app``). As in distribution's
    reference package, the first component is a host only if it has a ``.`` or ``:``, is
    ``localhost``, or has upper-case letters; otherwise the reference is Docker Hub's."""
    name = reference.split("@", 1)[0]
    last = name.rfind("/")
    if ":" in name[last + 1 :]:
        name = name[: name.rfind(":")]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return Reference(first.lower(), rest, True)
    return Reference(DOCKER_HUB, name, False)


@dataclass(frozen=True)
class RegistryNames:
    """The ``host`` and ``host:port`` names clients reach this registry by."""

    hosts: frozenset[str]

    @classmethod
    def of(cls, hosts: Iterable[str]) -> RegistryNames:
        return cls(frozenset(h.strip().lower() for h in hosts if h.strip()))

    def names(self, host: str) -> bool:
        """Whether ``host`` (as an image reference writes it) is this registry."""
        wanted = host.lower()
        if wanted in _DOCKER_HUB_NAMES:
            return bool(self.hosts & _DOCKER_HUB_NAMES)
        return wanted in self.hosts

    def describe(self) -> str:
        return ", ".join(sorted(self.hosts)) or "no name (none configured)"

    @property
    def fingerprint(self) -> str:
        """Changes when the names do: a signature's result may change with them."""
        return hashlib.sha256("\n".join(sorted(self.hosts)).encode()).hexdigest()[:8]


@runtime_checkable
class KnowsRegistry(Protocol):
    """A verifier that needs the registry's names (the ``signatures`` verifier)."""

    def know_registry(self, names: RegistryNames) -> None: ...
