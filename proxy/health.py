"""Liveness, readiness and metrics endpoints for orchestrators."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from oci.errors import OCIError
from proxy.state import services


async def healthz(request: web.Request) -> web.StreamResponse:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready only if both the upstream and the database answer."""
    svc = services(request)
    checks: dict[str, str] = {}
    try:
        status = await svc.upstream.probe()
        checks["upstream"] = "ok" if status in (200, 401) else f"status {status}"
    except OCIError as exc:
        checks["upstream"] = exc.message
    try:
        async with svc.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver failure means "not ready"
        checks["database"] = f"unavailable ({exc.__class__.__name__})"
    ready = all(value == "ok" for value in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    body = services(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
