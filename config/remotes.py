"""Remote registries the upstream registry fetches images from on demand (a pull-through
cache, Distribution's ``proxy: remoteurl:``), and where an image comes from.

The gatekeeper never fetches from a remote itself to serve a pull: the registry behind it does,
and the gatekeeper verifies what it serves, as for any image it never saw pushed. What the
settings add is the *origin* of an image, which a policy may be chosen by (``Policy.origins``):

- an image pushed through the gatekeeper comes from here (:data:`LOCAL`), whatever the
  repository;
- any other image (first seen on a pull, a prefetch, ``enroll``) comes from the remote whose
  ``repositories`` match its repository (the most specific pattern, then the first remote), or
  from here when no remote serves that repository.

A remote's ``url`` is asked only to say why the registry could not fetch an image (down, rate
limited, failing, or it simply has no such image) and never with a client's credentials.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator

from config.references import parse_image_reference
from config.scheduling import Duration

LOCAL = "local"
"""The origin of images pushed to this registry (and of any image no remote serves)."""
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""What a remote's name (and so an origin) looks like: it appears in messages and settings."""


def check_origin_name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(
            f"{value[:100]!r} is not a remote name (lower-case letters, digits and inner "
            "dashes, at most 63 characters, e.g. docker-hub)"
        )
    return value


def check_patterns(value: list[str]) -> list[str]:
    """Repository globs: no blanks, no whitespace, at most 255 characters."""
    for pattern in value:
        if not pattern or len(pattern) > 255 or any(c in pattern for c in " \t\r\n"):
            raise ValueError(f"invalid repository pattern {pattern!r}")
    return value


def specificity(pattern: str) -> tuple[int, int]:
    """Fewer wildcards, then a longer pattern, is more specific (policies and remotes alike)."""
    wildcards = sum(pattern.count(c) for c in "*?[")
    return (-wildcards, len(pattern))


class Remote(BaseModel):
    """One remote registry the upstream registry fetches from (``proxy: remoteurl:``)."""

    model_config = {"extra": "forbid", "frozen": True, "hide_input_in_errors": True}

    name: str
    """How policies (``origins``), messages and the admin API name it, e.g. ``docker-hub``."""
    url: AnyHttpUrl | None = None
    """The remote's registry API, as in the registry's ``proxy.remoteurl``
    (``https://registry-1.docker.io`` for Docker Hub). The gatekeeper asks it only why a fetch
    failed (a ``HEAD`` of the manifest, which Docker Hub does not count against its pull
    limit); unset: the gatekeeper never contacts it and its messages can only guess."""
    repositories: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    """The repositories the registry serves from this remote (globs, ``library/*``); a
    registry in proxy mode serves every repository from its one remote (``*``)."""
    username: str | None = None
    password: SecretStr | None = None
    """The gatekeeper's own read credentials for ``url`` (Basic, or for its token server);
    unset: anonymous, which is enough for public images."""
    hold_seconds: float = Field(default=300.0, ge=0, le=600)
    """How long a pull of an image from this remote that is still being verified is held
    waiting for the verdict before it is told to try again (a first pull of a large image:
    the registry fetches its layers from the remote while the gatekeeper scans them). The
    policy's hold still applies when longer; ``verification.first_pull_hold_seconds`` does
    not (it is for images pushed around the gatekeeper). Keep it under the read timeout of
    any proxy in front of the gatekeeper (nginx: ``proxy_read_timeout``)."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """Connect and answer timeout of the gatekeeper's own questions to ``url``."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        check_origin_name(value)
        if value == LOCAL:
            raise ValueError(f"{LOCAL!r} is the origin of images pushed here; choose another name")
        return value

    @field_validator("repositories")
    @classmethod
    def _check_repositories(cls, value: list[str]) -> list[str]:
        return check_patterns(value)


def remote_for(remotes: Sequence[Remote], repository: str) -> Remote | None:
    """The remote the registry serves ``repository`` from: the most specific matching pattern,
    then the first remote; None when no remote serves it."""
    best: tuple[tuple[int, int], int, Remote] | None = None
    for index, remote in enumerate(remotes):
        for pattern in remote.repositories:
            if fnmatch.fnmatchcase(repository, pattern):
                key = (specificity(pattern), -index, remote)
                if best is None or key[:2] > best[:2]:
                    best = key
    return best[2] if best else None


def origin_of(remotes: Sequence[Remote], repository: str, *, pushed: bool) -> str:
    """Where an image of ``repository`` comes from (see the module docstring)."""
    if pushed:
        return LOCAL
    remote = remote_for(remotes, repository)
    return remote.name if remote is not None else LOCAL


class PrefetchSettings(BaseModel):
    """Images fetched and verified before anyone pulls them, and kept warm by the scheduler
    (``gatekeeper prefetch`` does the same once, by hand)."""

    model_config = {"extra": "forbid"}

    images: list[str] = Field(default_factory=list)
    """``REPOSITORY:TAG`` (or ``REPOSITORY@sha256:...``) references, e.g.
    ``library/alpine:3.20``: each interval, every tag is resolved again through the registry
    (so a tag the remote moved is fetched and verified before anyone pulls it) and each
    image is verified again (new advisories, new rules)."""
    interval: Duration = Field(default=21600.0, ge=0)
    """Time between two warm-ups (``"6h"``); ``"off"``: only ``gatekeeper prefetch``. The first
    one comes at the first scheduler tick of a deployment."""

    @field_validator("images")
    @classmethod
    def _check_images(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_image_reference(text)
        if len(set(value)) != len(value):
            raise ValueError("each image may appear only once")
        return value
