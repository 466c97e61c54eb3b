"""``GET /v2/<name>/referrers/<digest>``, served from the gatekeeper's own manifest index because
the upstream (distribution 2.8) does not implement the referrers API. The list says what an image
is (its signatures, its SBOM), so it is gated like the image itself."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from oci.grammar import is_media_type
from oci.manifests import OCI_INDEX
from proxy import gate
from proxy.context import info
from proxy.handlers.common import digest_param, repository
from proxy.state import services
from storage.manifests import referrers


async def get(request: web.Request) -> web.StreamResponse:
    info(request).action = "referrers.list"
    name = repository(request)
    subject = digest_param(request)
    artifact_type = request.query.get("artifactType") or None
    await gate.check_referrers(request, name, subject)
    found = []
    # A filter that is not a media type matches nothing: parse_manifest stores none such (and
    # PostgreSQL cannot even compare text holding a NUL, so it is not asked).
    if artifact_type is None or is_media_type(artifact_type):
        async with services(request).db() as session:
            found = await referrers(session, name, subject, artifact_type)
    manifests: list[dict[str, Any]] = []
    for ref in found:
        item: dict[str, Any] = {"mediaType": ref.media_type, "digest": ref.digest, "size": ref.size}
        if ref.artifact_type:
            item["artifactType"] = ref.artifact_type
        if ref.annotations:
            item["annotations"] = ref.annotations
        manifests.append(item)
    headers = {"Docker-Distribution-API-Version": "registry/2.0"}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    # The bare media type, as the spec's conformance tests and clients compare it:
    # json_response would append "; charset=utf-8".
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    return web.Response(body=body.encode(), content_type=OCI_INDEX, headers=headers)
