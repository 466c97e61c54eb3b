"""One delivery attempt over HTTP: sign the stored body, POST it, and describe the outcome.

Knows httpx and nothing of the database; the dispatcher decides what an outcome means for the
delivery (delivered, retried, failed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

import httpx

from config.settings import WebhookSettings
from proxy.webhooks.cloudevents import USER_AGENT, request_headers
from storage.timeutil import now as utcnow
from storage.webhooks import AttemptResult, ClaimedDelivery
from upstream.tls import verifying_context

log = logging.getLogger("gatekeeper.webhooks")

ERROR_BODY_BYTES = 200


def webhook_key(url: str) -> str:
    """How deliveries name their receiver: a hash, since URLs often carry a token."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Hook:
    """A configured webhook, with the two names it goes by: a key in the database and a label
    for logs (scheme, host and port only)."""

    key: str
    label: str
    settings: WebhookSettings

    @classmethod
    def of(cls, settings: WebhookSettings) -> Hook:
        url = settings.url
        port = f":{url.port}" if url.port not in (None, 80, 443) else ""
        return cls(webhook_key(str(url)), f"{url.scheme}://{url.host}{port}", settings)


def make_webhook_client() -> httpx.AsyncClient:
    """The process's one client for webhooks. Redirects are not followed: a 3xx is a failed
    attempt, so a receiver cannot bounce signed events elsewhere."""
    return httpx.AsyncClient(
        follow_redirects=False, headers={"User-Agent": USER_AGENT}, verify=verifying_context()
    )


async def send_once(
    client: httpx.AsyncClient, hook: Hook, delivery: ClaimedDelivery
) -> AttemptResult:
    """One attempt: sign, POST, and say what came of it. Never raises, except when cancelled."""
    cfg = hook.settings
    body = delivery.payload.encode()
    headers = request_headers(
        cfg.secret.get_secret_value().encode(),
        body,
        delivery.id,
        delivery.event_type,
        time.time(),
    )
    started, clock = utcnow(), time.perf_counter()
    status: int | None = None
    try:
        async with (
            asyncio.timeout(cfg.timeout_seconds),
            client.stream(
                "POST", str(cfg.url), content=body, headers=headers, timeout=cfg.timeout_seconds
            ) as resp,
        ):
            status = resp.status_code
            error = await _error_of(resp)
    except TimeoutError:
        error = f"no answer within {cfg.timeout_seconds:g}s"
    except Exception as exc:  # whatever went wrong, it is a failed attempt, and recorded
        if not isinstance(exc, httpx.HTTPError):
            log.exception("webhooks: unexpected error sending to %s", hook.label)
        text = str(exc).replace(str(cfg.url), hook.label) or "no detail"
        error = f"{exc.__class__.__name__}: {text}"
    duration = round((time.perf_counter() - clock) * 1000, 3)
    return AttemptResult(started, status, error, duration)


async def _error_of(resp: httpx.Response) -> str | None:
    """None for a 2xx; otherwise the status and the start of the body, on one line."""
    if 200 <= resp.status_code < 300:
        return None
    start = b""
    async for chunk in resp.aiter_bytes():
        start += chunk
        if len(start) >= ERROR_BODY_BYTES:
            break
    text = " ".join(start[:ERROR_BODY_BYTES].decode("utf-8", "replace").split())
    return f"HTTP {resp.status_code}" + (f": {text}" if text else "")
