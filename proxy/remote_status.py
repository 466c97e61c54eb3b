"""Why the registry could not fetch an image from a remote, asked of the remote itself.

Distribution's proxy mode hides the remote's answer: a manifest it could not fetch is a 404
``MANIFEST_UNKNOWN`` whether the remote has no such image, is down, or refused it with 429
(Docker Hub's pull limit); a blob is a 500 ``UNKNOWN``. A developer deserves to know which, so
when the registry fails to serve an image of a repository a remote serves, the gatekeeper asks
that remote (``Remote.url``) the cheapest question that tells: ``GET /v2/``, its token server if
it has one, and a ``HEAD`` of the manifest or blob. Docker Hub counts no ``HEAD`` against the
pull limit and reports the limit in ``ratelimit-remaining`` headers, so this spends nothing of
it. The gatekeeper's own credentials for the remote are used, never a client's.

Answers are remembered for :data:`TTL` seconds (and a remote found down, failing or rate
limited is not asked again about any image meanwhile), and concurrent questions about the same
image share one probe, so an outage with a thousand failing pulls costs the remote a few
requests.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from config.remotes import Remote
from upstream.client import parse_challenge
from upstream.tls import verifying_context

log = logging.getLogger("gatekeeper.remotes")

TTL = 10.0
"""Seconds an answer is reused."""
_CACHE_LIMIT = 10_000


class Status(enum.Enum):
    """What the remote said about one image."""

    HAS_IT = "has-it"
    """It serves the image: whatever failed, failed in the registry."""
    NOT_FOUND = "not-found"
    """No such image there (or not for the gatekeeper's credentials, which for Docker Hub's
    anonymous tokens looks the same)."""
    DOWN = "down"
    """Unreachable: no connection, or no answer in time."""
    RATE_LIMITED = "rate-limited"
    """429, or a pull limit with nothing remaining."""
    FAILING = "failing"
    """A server error (5xx), or an answer no registry gives."""
    UNKNOWN = "unknown"
    """Not asked (no ``url`` configured), or it refused the gatekeeper itself."""


BLOCKING = frozenset({Status.DOWN, Status.RATE_LIMITED, Status.FAILING})
"""States that say the remote cannot serve anything right now."""


@dataclass(frozen=True)
class Diagnosis:
    """The remote's answer about one image."""

    remote: Remote
    status: Status
    detail: str
    """What was seen, for people: ``connection refused``, ``HTTP 503``, ``429 Too Many
    Requests``."""
    retry_after: int | None = None
    """Seconds the remote asked to wait (``Retry-After``), if it said."""


class RemoteStatus:
    """Asks remotes why a fetch failed (see the module docstring)."""

    def __init__(
        self,
        remotes: Sequence[Remote],
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._remotes = {remote.name: remote for remote in remotes}
        self._client = client
        self._clock = clock
        self._answers: dict[tuple[str, ...], tuple[float, Diagnosis]] = {}
        self._asking: dict[tuple[str, ...], asyncio.Task[Diagnosis]] = {}

    async def diagnose(
        self, remote: Remote, repository: str, kind: str, reference: str
    ) -> Diagnosis:
        """What ``remote`` says of ``repository``'s manifest or blob (``kind``: ``manifests``
        or ``blobs``) ``reference``."""
        if remote.url is None:
            return Diagnosis(remote, Status.UNKNOWN, "the gatekeeper was given no url to ask")
        whole = self._remembered((remote.name,))
        if whole is not None:
            return whole
        key = (remote.name, repository, kind, reference)
        found = self._remembered(key)
        if found is not None:
            return found
        task = self._asking.get(key)
        if task is None:
            task = asyncio.create_task(self._ask(remote, repository, kind, reference))
            self._asking[key] = task
            task.add_done_callback(lambda _: self._asking.pop(key, None))
        diagnosis = await asyncio.shield(task)
        if self._remembered(key) is None:
            self._remember(key, diagnosis)
            if diagnosis.status in BLOCKING:
                self._remember((remote.name,), diagnosis)
                log.warning("remote %s: %s", remote.name, diagnosis.detail)
        return diagnosis

    def _remembered(self, key: tuple[str, ...]) -> Diagnosis | None:
        hit = self._answers.get(key)
        if hit is None or hit[0] <= self._clock():
            return None
        return hit[1]

    def _remember(self, key: tuple[str, ...], diagnosis: Diagnosis) -> None:
        if len(self._answers) >= _CACHE_LIMIT:
            self._answers.clear()
        self._answers[key] = (self._clock() + TTL, diagnosis)

    async def _ask(self, remote: Remote, repository: str, kind: str, reference: str) -> Diagnosis:
        base = str(remote.url).rstrip("/")
        timeout = remote.timeout_seconds
        try:
            probe = await self._client.get(f"{base}/v2/", timeout=timeout)
            verdict = _blocking(remote, probe)
            if verdict is not None:
                return verdict
            headers: dict[str, str] = {}
            if probe.status_code == 401:
                authorization = await self._authorize(remote, probe, repository, timeout)
                if isinstance(authorization, Diagnosis):
                    return authorization
                headers = authorization
            path = f"{base}/v2/{repository}/{kind}/{quote(reference, safe=':')}"
            if kind == "manifests":
                headers["Accept"] = ACCEPT
            answer = await self._client.head(path, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return Diagnosis(remote, Status.DOWN, f"no answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            return Diagnosis(remote, Status.DOWN, _transport(exc))
        except Exception:  # a question that went wrong must not turn a pull into a 500
            log.exception("asking remote %s about %s failed", remote.name, repository)
            return Diagnosis(remote, Status.UNKNOWN, "the gatekeeper could not ask it")
        return _about_image(remote, answer)

    async def _authorize(
        self, remote: Remote, probe: httpx.Response, repository: str, timeout: float
    ) -> dict[str, str] | Diagnosis:
        """The ``Authorization`` header for a pull of ``repository``, or why there is none."""
        challenge = parse_challenge(probe.headers.get("WWW-Authenticate", ""))
        auth = _basic(remote)
        if challenge is None or challenge.scheme == "basic":
            if auth is None:
                return Diagnosis(remote, Status.UNKNOWN, "it wants credentials (remotes.username)")
            return {"Authorization": _basic_header(auth)}
        realm = challenge.params.get("realm")
        if challenge.scheme != "bearer" or not realm:
            return Diagnosis(remote, Status.UNKNOWN, f"it asks for {challenge.scheme} auth")
        params = {"scope": f"repository:{repository}:pull"}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        answer = await self._client.get(realm, params=params, auth=auth, timeout=timeout)
        verdict = _blocking(remote, answer, "its token server")
        if verdict is not None:
            return verdict
        if answer.status_code != 200:
            why = f"its token server refused the gatekeeper (HTTP {answer.status_code})"
            return Diagnosis(remote, Status.UNKNOWN, why)
        try:
            body = answer.json()
            token = str(body.get("token") or body["access_token"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return Diagnosis(remote, Status.FAILING, "its token server answered no token")
        return {"Authorization": f"Bearer {token}"}


ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def _basic_header(auth: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def _basic(remote: Remote) -> tuple[str, str] | None:
    if remote.username is None:
        return None
    password = remote.password.get_secret_value() if remote.password else ""
    return remote.username, password


def _blocking(remote: Remote, resp: httpx.Response, what: str = "it") -> Diagnosis | None:
    """A 429 or a server error, whatever was asked."""
    if resp.status_code == 429:
        wait = _retry_after(resp.headers)
        return Diagnosis(
            remote, Status.RATE_LIMITED, f"{what} answered 429 Too Many Requests", wait
        )
    if resp.status_code >= 500:
        return Diagnosis(remote, Status.FAILING, f"{what} answered HTTP {resp.status_code}")
    return None


def _about_image(remote: Remote, resp: httpx.Response) -> Diagnosis:
    verdict = _blocking(remote, resp)
    if verdict is not None:
        return verdict
    if resp.status_code == 200:
        left = resp.headers.get("ratelimit-remaining", "")
        if left.split(";", 1)[0].strip() == "0":
            limit = resp.headers.get("ratelimit-limit", "").split(";", 1)[0].strip()
            why = f"its pull limit{f' of {limit}' if limit else ''} is used up"
            return Diagnosis(remote, Status.RATE_LIMITED, why, _retry_after(resp.headers))
        return Diagnosis(remote, Status.HAS_IT, "it has the image")
    if resp.status_code in (401, 403, 404):
        return Diagnosis(remote, Status.NOT_FOUND, f"HTTP {resp.status_code}")
    return Diagnosis(remote, Status.FAILING, f"it answered HTTP {resp.status_code}")


def _retry_after(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Retry-After", "").strip()
    return int(value) if value.isdigit() and int(value) <= 86400 else None


def _transport(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or no route to it"
    return f"the connection failed ({type(exc).__name__})"


def make_remote_client() -> httpx.AsyncClient:
    """The client for questions to remotes: no redirects followed (a registry API answers
    where it is asked), no cookies kept; each question sets its remote's timeout."""
    return httpx.AsyncClient(follow_redirects=False, timeout=10.0, verify=verifying_context())
