"""``/repositories/{name}/manifests/{digest}/sbom``: an image's stored package inventory as
CycloneDX JSON, the same document ``gatekeeper sbom`` prints.

Read from the database only (the ``inventory`` verifier stored it when the image was verified):
no layer is read. An image never inventoried is a 404 that says so, not an empty SBOM.
"""

from __future__ import annotations

from aiohttp import web

from oci.errors import OCIError
from proxy.admin.access import require
from proxy.admin.common import services
from proxy.admin.errors import AdminCode, AdminError
from proxy.context import info
from proxy.names import check_digest, check_name, check_raw_path
from storage.inventory import DbInventoryStore

MEDIA_TYPE = "application/vnd.cyclonedx+json"


def _target(request: web.Request) -> tuple[str, str]:
    """Repository and digest from the path, validated with the registry's own grammar and
    within what the caller may read."""
    try:
        check_raw_path(request.raw_path)
        repository = check_name(request.match_info["name"])
    except OCIError as exc:
        raise AdminError(AdminCode.NAME_INVALID, exc.message) from exc
    try:
        digest = check_digest(request.match_info["digest"])
    except OCIError as exc:
        raise AdminError(AdminCode.DIGEST_INVALID, exc.message) from exc
    record = info(request)
    record.repository, record.digest = repository, digest
    require(request, repository)
    return repository, digest


async def sbom(request: web.Request) -> web.StreamResponse:
    """GET /repositories/{name}/manifests/{digest}/sbom : CycloneDX JSON of the inventory."""
    repository, digest = _target(request)
    inventory = await DbInventoryStore(services(request).db).load(repository, digest)
    if inventory is None:
        raise AdminError(
            AdminCode.NOT_FOUND,
            f"{repository}@{digest} has no inventory: it was not verified with the inventory "
            "verifier enabled",
        )
    # Imported here: cyclonedx-python-lib is about 4 MiB resident, for a rare request.
    from verifiers.scan.cyclonedx import to_cyclonedx

    body = to_cyclonedx(repository, digest, inventory).encode()
    return web.Response(body=body, content_type=MEDIA_TYPE)
