"""What a client is told when the registry could not fetch an image from the remote serving
its repository: an OCI error that names the remote and says what it is doing (down, rate
limiting, failing), instead of the registry's bare ``MANIFEST_UNKNOWN`` or ``UNKNOWN``.

Only a failed fetch leads here (a manifest the registry answered 404 or 5xx, a blob it answered
5xx), so images already in the registry's cache keep being served while their remote is down:
the registry answers them from its storage and the gate decides them as always. A 404 the
remote confirms (no such image) is passed on as the registry gave it.
"""

from __future__ import annotations

import json

from aiohttp import web

from config.remotes import Remote
from config.text import visible
from oci.errors import Code, OCIError
from proxy.context import info
from proxy.remote_status import Diagnosis, Status
from proxy.state import services


async def check_fetch(
    request: web.Request,
    repository: str,
    kind: str,
    reference: str,
    status: int,
    body: bytes = b"",
) -> None:
    """After the registry answered ``status`` (and ``body``) for ``repository``'s manifest
    or blob (``kind``) ``reference``: raise the error naming the remote, or return to pass the
    registry's answer on (no remote serves the repository, or the remote has no such image)."""
    if status != 404 and status < 500:
        return
    svc = services(request)
    remote = svc.verification.serving_remote(repository)
    if remote is None:
        return
    diagnosis = await svc.remotes.diagnose(remote, repository, kind, reference)
    error = explain(diagnosis, what(repository, kind, reference), status, registry_said(body))
    if error is None:
        return
    svc.metrics.remote_failures.labels(remote.name, diagnosis.status.value).inc()
    info(request).reason = error.message
    raise error


def what(repository: str, kind: str, reference: str) -> str:
    """``library/alpine:3.20``, ``library/alpine@sha256:...``, ``blob sha256:... of ...``."""
    if kind == "blobs":
        return f"blob {reference} of {repository}"
    return f"{repository}{'@' if ':' in reference else ':'}{reference}"


def explain(
    diagnosis: Diagnosis, image: str, status: int, said: str | None = None
) -> OCIError | None:
    """The error for a fetch the registry answered ``status`` for, given what the remote said;
    None when the registry's own answer is the right one (a 404 for what the remote does not
    have, or cannot be asked about). ``said``: the registry's own error message, if any."""
    remote, state = diagnosis.remote, diagnosis.status
    name = _named(remote)
    cached = "images already fetched and verified are still served"
    if state == Status.RATE_LIMITED:
        wait = diagnosis.retry_after
        when = f"try again in about {wait} s" if wait else "try again later"
        return _error(
            Code.TOO_MANY_REQUESTS,
            f"{name} is rate limiting pulls ({diagnosis.detail}): {image} is not in the "
            f"registry's cache and cannot be fetched now; {cached}; {when}",
            diagnosis,
            status,
        )
    if state in (Status.DOWN, Status.FAILING):
        how = "cannot be reached" if state == Status.DOWN else "is failing"
        return _error(
            Code.UPSTREAM_UNAVAILABLE,
            f"{name} {how} ({diagnosis.detail}): {image} is not in the registry's cache and "
            f"cannot be fetched now; {cached}; try again later",
            diagnosis,
            status,
        )
    if state == Status.HAS_IT:
        quoted = f" (the registry said: {said})" if said else ""
        return _error(
            Code.UPSTREAM_BAD_GATEWAY,
            f"the registry could not fetch {image} from {name}, which has it{quoted}: see the "
            f"registry's log (its proxy settings, its credentials for {remote.name}, or a pull "
            "limit on the registry's own account)",
            diagnosis,
            status,
        )
    if status == 404:
        return None
    return _error(
        Code.UPSTREAM_BAD_GATEWAY,
        f"the registry failed (HTTP {status}) to fetch {image} from {name} ({diagnosis.detail})",
        diagnosis,
        status,
    )


def _named(remote: Remote) -> str:
    """``remote docker-hub (registry-1.docker.io)``: its name, and where it is."""
    url = remote.url
    if url is None or url.host is None:
        return f"remote {remote.name}"
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port is not None and url.port != default else ""
    return f"remote {remote.name} ({url.host}{port})"


def _error(code: Code, message: str, diagnosis: Diagnosis, status: int) -> OCIError:
    detail = {
        "remote": diagnosis.remote.name,
        "remote_status": diagnosis.status.value,
        "reason": diagnosis.detail,
        "upstream_status": status,
    }
    headers = {}
    if diagnosis.retry_after is not None:
        headers["Retry-After"] = str(diagnosis.retry_after)
    return OCIError(code, message, detail, headers=headers)


def registry_said(body: bytes) -> str | None:
    """The innermost ``message`` of the registry's error envelope (Distribution wraps what its
    remote said in the ``detail`` of an ``UNKNOWN``), at most 300 characters."""
    try:
        doc = json.loads(body[:65536]) if body else None
    except ValueError:
        return None
    found: str | None = None
    for _ in range(4):  # envelopes in envelopes, a few deep at most
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
            break
        message = errors[0].get("message")
        if isinstance(message, str) and message:
            found = message
        doc = errors[0].get("detail")
    return visible(found[:300]) if found else None
