"""``/prefetch``: fetch public images through the registry and verify them before the first
developer pulls them (``proxy.prefetch``).

The caller must administer each repository it names: prefetching spends the remote's pull
limit and the workers' time, like a rescan. The answer comes when every image was fetched and
its verification queued; the verdicts follow (``GET /images/{repository}@{digest}``, which
``gatekeeper prefetch`` polls to show progress).
"""

from __future__ import annotations

from aiohttp import web

from config.references import parse_image_reference
from proxy.admin.access import require
from proxy.admin.bodies import PrefetchBody
from proxy.admin.common import actor, ok, read_body, services
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.models import Prefetched, PrefetchResult
from proxy.context import info
from proxy.prefetch import REASON, Prefetcher
from storage import jobs


async def prefetch(request: web.Request) -> web.StreamResponse:
    """POST /prefetch : fetch each image and queue its verification; 202 with what became of
    each (an image that could not be fetched says why, naming the remote)."""
    body = await read_body(request, PrefetchBody)
    repositories = set()
    for index, text in enumerate(body.images):
        try:
            repository = parse_image_reference(text).repository
        except ValueError as exc:
            raise AdminError(AdminCode.INVALID_FIELD, f"images.{index}: {exc}") from exc
        require(request, repository)
        repositories.add(repository)
    if len(repositories) == 1:
        info(request).repository = repositories.pop()  # the row says where, as for a rescan
    who = actor(request, body.actor, body.reason or "prefetch")
    svc = services(request)
    prefetcher = Prefetcher(
        svc.upstream,
        svc.verification,
        svc.remotes,
        on_result=lambda result: svc.metrics.prefetched.labels(result).inc(),
    )
    reason = f"{REASON} by {who}" + (f": {body.reason}" if body.reason else "")
    done = [
        await prefetcher.prefetch(text, identity=jobs.admin(who), again=body.again, reason=reason)
        for text in dict.fromkeys(body.images)
    ]
    return ok(PrefetchResult(images=[Prefetched.model_validate(item) for item in done]), status=202)
