"""The one shared connection to the upstream registry, and the gatekeeper's own upstream auth.

Clients never authenticate to the upstream: the gatekeeper holds the upstream's credentials and
answers its challenges (Basic, or Bearer with the upstream's token server) itself. Bodies are
streamed, so a request carrying one cannot be replayed after a 401; :meth:`Upstream.request`
therefore learns the challenge up front (one ``GET /v2/``) and sends credentials on the first try.

aiohttp's client carries the proxied traffic: streaming blobs over loopback it measured faster
than httpx (see ``bench/client_bench.py``). httpx serves the calls that merely go out (the token
server here; advisory mirrors and webhooks later).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

from config.settings import Settings
from oci.errors import Code, OCIError
from upstream.tls import verifying_context

log = logging.getLogger("gatekeeper.upstream")

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Challenge:
    """What the upstream's ``WWW-Authenticate`` asked for."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    return Challenge(scheme=scheme.lower(), params=dict(_PARAM_RE.findall(rest)))


class UpstreamAuth:
    """Credentials for the upstream, with a per-scope bearer token cache."""

    def __init__(self, settings: Settings, token_client: httpx.AsyncClient) -> None:
        self._username = settings.upstream_username
        self._password = (
            settings.upstream_password.get_secret_value() if settings.upstream_password else None
        )
        self._client = token_client
        self.challenge: Challenge | None = None
        self.probed = False
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    def _basic(self) -> str | None:
        if self._username is None:
            return None
        raw = f"{self._username}:{self._password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization header for ``scopes``, fetching a token if needed."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            return self._basic()
        if self.challenge.scheme != "bearer":
            return None
        key = " ".join(sorted(scopes))
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        async with self._lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
            token, lifetime = await self._fetch_token(scopes)
            # Renew a little early so a token never expires between check and use.
            self._tokens[key] = (token, time.monotonic() + max(lifetime - 10, 1))
            return f"Bearer {token}"

    async def _fetch_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        assert self.challenge is not None
        realm = self.challenge.params.get("realm")
        if not realm:
            raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream bearer challenge has no realm")
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in self.challenge.params:
            params.append(("service", self.challenge.params["service"]))
        params.extend(("scope", scope) for scope in scopes)
        auth = (self._username, self._password or "") if self._username else None
        try:
            resp = await self._client.get(realm, params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise OCIError(Code.UPSTREAM_UNAVAILABLE, "upstream token server unreachable") from exc
        if resp.status_code != 200:
            raise OCIError(
                Code.UPSTREAM_BAD_GATEWAY,
                f"upstream token server refused the gatekeeper ({resp.status_code})",
            )
        try:
            body = resp.json()
            token = body.get("token") or body["access_token"]
            lifetime = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError) as exc:
            raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream token answer unreadable") from exc
        return str(token), lifetime

    def learn(self, header: str | None) -> None:
        self.probed = True
        self.challenge = parse_challenge(header) if header else None
        self._tokens.clear()


def v2_path(name: str, *parts: str) -> str:
    """An upstream path built only from validated, percent-encoded parts."""
    return "/v2/" + name + "/" + "/".join(quote(part, safe="") for part in parts)


class Upstream:
    """Sends requests to the upstream registry; wraps its failures in OCI errors."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        token_client: httpx.AsyncClient,
    ) -> None:
        self.base = URL(str(settings.upstream_url)).with_path("")
        self.session = session
        self.auth = UpstreamAuth(settings, token_client)

    def url(self, path: str) -> URL:
        """``path`` must already be built from validated parts and be percent-encoded."""
        return self.base.join(URL(path, encoded=True))

    async def probe(self) -> int:
        """``GET /v2/`` without credentials, to learn the challenge scheme (and for readiness)."""
        async with self._send("GET", self.url("/v2/"), headers={}, data=None) as resp:
            if resp.status == 401:
                header = resp.headers.get("WWW-Authenticate")
                learned = parse_challenge(header) if header else None
                # Readiness probes run every few seconds: keep cached tokens unless the
                # upstream's challenge itself changed.
                if not self.auth.probed or learned != self.auth.challenge:
                    self.auth.learn(header)
            else:
                self.auth.probed = True
            return int(resp.status)

    async def request(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...] = (),
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        replayable: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send one request; the caller must release the response (``async with`` or release()).

        ``replayable`` is False when ``data`` is a stream: then a 401 cannot be retried, which
        is why the challenge is probed before the first such request.
        """
        if not self.auth.probed:
            await self.probe()
        url = self.url(path)
        if params:
            url = url.update_query(params)
        for attempt in (1, 2):
            sent = CIMultiDict(headers or {})
            authorization = await self.auth.header(scopes)
            if authorization:
                sent["Authorization"] = authorization
            resp = await self._send(method, url, headers=sent, data=data)
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate")
            resp.release()
            if challenge:
                self.auth.learn(challenge)
            if attempt == 2 or not replayable or not challenge:
                break
        raise OCIError(
            Code.UPSTREAM_BAD_GATEWAY,
            "the upstream registry refused the gatekeeper's credentials",
            {"upstream_status": 401},
        )

    def _send(self, method: str, url: URL, *, headers: Mapping[str, str], data: Any) -> Guarded:
        return Guarded(
            self.session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
            )
        )


class Guarded:
    """Await or ``async with`` an aiohttp request, turning transport failures into OCI errors
    that name ``what`` failed (the upstream registry, or the object storage it redirects to)."""

    def __init__(self, ctx: Any, what: str = "the upstream registry") -> None:
        self._ctx = ctx
        self._what = what
        self._resp: aiohttp.ClientResponse | None = None

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self._run().__await__()

    async def _run(self) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._ctx
            return response
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            raise OCIError(
                Code.UPSTREAM_UNAVAILABLE,
                f"{self._what} is unreachable; try again shortly",
                {"error": exc.__class__.__name__},
            ) from exc
        except TimeoutError as exc:
            raise OCIError(
                Code.UPSTREAM_UNAVAILABLE, f"{self._what} did not answer in time"
            ) from exc
        except aiohttp.ClientError as exc:
            raise OCIError(
                Code.UPSTREAM_BAD_GATEWAY,
                f"{self._what} failed",
                {"error": exc.__class__.__name__},
            ) from exc

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._resp = await self._run()
        return self._resp

    async def __aexit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.release()


def make_client_session(settings: Settings) -> aiohttp.ClientSession:
    """The shared upstream session: pooled keep-alive connections, no decompression, no
    cookies, no total timeout (a 2 GB layer takes as long as it takes)."""
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.upstream_timeout_seconds,
        sock_connect=settings.upstream_timeout_seconds,
        sock_read=max(settings.upstream_timeout_seconds, 60.0),
    )
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=0, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    )


def make_token_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.upstream_timeout_seconds,
        follow_redirects=False,
        verify=verifying_context(),
    )
