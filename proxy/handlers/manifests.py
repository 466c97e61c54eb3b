"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT, DELETE.

Manifests are small (capped), so unlike blobs they are read whole: a pushed manifest is parsed
and indexed before the push is acknowledged, and a pulled one is checked against the digest it
was asked for, so a misbehaving upstream cannot hand out different bytes for a digest.

A manifest asked for by digest is content-addressed: when the registry's storage is mounted
(``upstream_storage_root``) and the repository holds it, it is read from the registry's own
file, checked against its digest, and answered without a round trip (``proxy.registry_files``);
the gate decides exactly as for one fetched from the registry. A tag is resolved to its digest
from the same storage, by the file the registry itself reads for it on every request, then
served as that digest (gate, access-log row and ``Docker-Content-Digest`` name the digest).
Asked of the registry instead: tags of a registry in proxy mode (it asks its remote first),
and anything the files cannot answer alone (a missing or inconsistent link, a media type the
client did not list in ``Accept``: the registry's own negotiation then applies, e.g. the schema
1 rewrite Distribution 2.8 still does for a tag, or its 404 for an OCI manifest not accepted).

Conditional requests (``If-None-Match``) are answered here, after the gate: the gatekeeper
always has the manifest itself in hand, so a ``304`` can never confirm a quarantined digest.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict
from sqlalchemy.ext.asyncio import AsyncSession

from oci.cosign_tags import read_cosign_tag
from oci.errors import Code, OCIError
from oci.manifests import MANIFEST_TYPES, ManifestRecord, parse_manifest, sha256_digest
from proxy import gate, registry_files, remote_failures
from proxy.context import info
from proxy.forward import request_headers, response_headers
from proxy.handlers.common import public, repository, scopes
from proxy.names import check_reference, is_digest
from proxy.state import Services, services
from services import vex_intake
from services.inline import HeldManifest
from storage import content, verdicts
from storage.db import DATABASE_ERRORS
from storage.manifests import forget_manifest, get_manifest, record_manifest
from storage.writer import transact
from upstream.bodies import read_at_most
from upstream.client import v2_path

log = logging.getLogger("gatekeeper.manifests")


def _reference(request: web.Request) -> str:
    reference = check_reference(request.match_info["reference"])
    record = info(request)
    record.reference = reference
    if is_digest(reference):
        record.digest = reference
    return reference


async def _read_capped(request: web.Request, limit: int, idle_timeout: float) -> bytes:
    """The manifest body, refused if larger than ``limit`` or stalled for ``idle_timeout``."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise OCIError(
            Code.MANIFEST_TOO_LARGE,
            f"manifest is {declared} bytes; the limit is {limit}",
            {"size": declared, "limit": limit},
        )
    try:
        body = await read_at_most(request.content, limit + 1, idle_timeout=idle_timeout)
    except TimeoutError as exc:
        log.info("manifest body of %s stalled for %ss", request.path, idle_timeout)
        raise OCIError(
            Code.MANIFEST_BODY_TIMEOUT,
            f"the manifest body stalled: nothing arrived for {idle_timeout:g} seconds",
            {"client_body_timeout_seconds": idle_timeout},
        ) from exc
    if len(body) > limit:
        raise OCIError(
            Code.MANIFEST_TOO_LARGE,
            f"manifest is larger than the limit of {limit} bytes",
            {"limit": limit},
        )
    info(request).bytes_in = len(body)
    return body


async def get(request: web.Request) -> web.StreamResponse:
    """GET and HEAD. Bodies are buffered (they are capped) so the digest can be checked."""
    record = info(request)
    head = request.method == "HEAD"
    record.action = "manifest.head" if head else "manifest.pull"
    name = repository(request)
    reference = _reference(request)
    svc = services(request)
    limit = svc.settings.max_manifest_bytes
    root = svc.settings.upstream_storage_root
    digest = _stored_digest(svc, root, name, reference) if root is not None else None
    if root is not None and digest is not None:
        body = registry_files.manifest(root, name, digest, limit)
        media_type = _declared_type(body) if body is not None else None
        if body is not None and media_type is not None and _accepts(request, media_type):
            return await _stored(request, name, digest, body, media_type)
    forwarded = request_headers(request)
    for header in CONDITIONAL:
        forwarded.popall(header, None)
    async with await svc.upstream.request(
        request.method,
        v2_path(name, "manifests", reference),
        scopes=scopes(name, "pull"),
        headers=forwarded,
    ) as resp:
        record.upstream_status = resp.status
        headers = response_headers(resp.headers, svc.upstream.base, public(request))
        body = b"" if head else await read_at_most(resp.content, limit + 1)
    if len(body) > limit:
        raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream manifest exceeds the size limit")
    digest = headers.get("Docker-Content-Digest")
    if resp.status != 200:
        await remote_failures.check_fetch(request, name, "manifests", reference, resp.status, body)
    if resp.status == 200:
        if not head:
            actual = sha256_digest(body)
            expected = reference if is_digest(reference) else digest
            if expected and expected.startswith("sha256:") and expected != actual:
                log.error("upstream served %s for %s@%s", actual, name, expected)
                raise OCIError(
                    Code.UPSTREAM_BAD_GATEWAY,
                    "the upstream served a manifest whose content does not match its digest",
                    {"expected": expected, "actual": actual},
                )
            digest = actual
        record.digest = digest or record.digest
        if record.digest is None:
            raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "the upstream did not say the digest")
        held = None if head else HeldManifest(body, resp.headers.get("Content-Type"))
        await gate.check_manifest(request, name, record.digest, held)
        if _not_modified(request, record.digest):
            record.bytes_out = 0
            return web.Response(status=304, headers=_validators(headers))
    record.bytes_out = len(body)
    if head:
        return web.Response(status=resp.status, headers=headers)
    return web.Response(status=resp.status, body=body, headers=headers)


def _stored_digest(svc: Services, root: Path, name: str, reference: str) -> str | None:
    """The digest to look for in the registry's files: the reference itself, or the one its
    tag points to now. None for a tag when the registry would ask a remote for it (remotes
    are configured, or its storage says it runs in proxy mode)."""
    if is_digest(reference):
        return reference
    if svc.settings.remotes or registry_files.pulls_through(root):
        return None
    return registry_files.tagged(root, name, reference)


async def _stored(
    request: web.Request, name: str, digest: str, body: bytes, media_type: str
) -> web.StreamResponse:
    """Answer from the registry's file, with the headers the registry would send."""
    record = info(request)
    record.digest = digest
    await gate.check_manifest(request, name, digest, HeldManifest(body, media_type))
    record.decision = f"{record.decision}:stored"
    headers = CIMultiDict(
        {
            "Content-Type": media_type,
            "Docker-Content-Digest": digest,
            "Docker-Distribution-API-Version": "registry/2.0",
            "ETag": f'"{digest}"',
        }
    )
    if _not_modified(request, digest):
        record.bytes_out = 0
        return web.Response(status=304, headers=_validators(headers))
    if request.method == "HEAD":
        record.bytes_out = 0
        headers["Content-Length"] = str(len(body))
        return web.Response(status=200, headers=headers)
    record.bytes_out = len(body)
    return web.Response(status=200, body=body, headers=headers)


def _declared_type(body: bytes) -> str | None:
    """The ``mediaType`` the manifest declares (what the registry sends as its
    ``Content-Type``), if it is a manifest type; else None."""
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        return None
    return declared if declared in MANIFEST_TYPES else None


def _accepts(request: web.Request, media_type: str) -> bool:
    """The client listed ``media_type`` in ``Accept`` (every client that pulls images does),
    compared as the registry compares it (exactly; parameters such as ``q`` ignored);
    otherwise the registry's own rules for what it sends (or refuses) apply."""
    listed = {
        part.split(";", 1)[0].strip()
        for value in request.headers.getall("Accept", [])
        for part in value.split(",")
    }
    return media_type in listed


CONDITIONAL = ("If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since")


def _not_modified(request: web.Request, digest: str) -> bool:
    """``If-None-Match`` names the manifest's ETag (the registry's is its quoted digest)."""
    wanted = request.headers.getall("If-None-Match", [])
    tags = {t.strip().removeprefix("W/") for value in wanted for t in value.split(",")}
    return "*" in tags or f'"{digest}"' in tags or digest in tags


def _validators(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    kept = ("ETag", "Docker-Content-Digest", "Docker-Distribution-API-Version", "Cache-Control")
    return CIMultiDict((k, v) for k, v in headers.items() if k in kept)


def _pushed(
    svc: Services, name: str, reference: str, body: bytes, content_type: str | None
) -> ManifestRecord:
    """The pushed manifest, parsed strictly, and checked against the digest it is pushed by."""
    computed = sha256_digest(body)
    if is_digest(reference) and reference.startswith("sha256:") and reference != computed:
        raise OCIError(
            Code.DIGEST_INVALID,
            f"manifest content has digest {computed}, not {reference}",
            {"expected": reference, "actual": computed},
        )
    manifest = parse_manifest(
        name, body, content_type, computed, max_descriptors=svc.settings.max_manifest_layers
    )
    cosign = read_cosign_tag(reference)
    if cosign and manifest.subject_digest is None:
        # What a cosign tag names the image it is about; it can only make this manifest
        # less pullable (it is pullable only while that image is), never more.
        manifest = replace(manifest, about_digest=cosign.subject)
    return manifest


async def put(request: web.Request) -> web.StreamResponse:
    """Validate, forward, then index. The push only succeeds once the index has it."""
    record = info(request)
    record.action = "manifest.push"
    name = repository(request)
    reference = _reference(request)
    svc = services(request)
    body = await _read_capped(
        request, svc.settings.max_manifest_bytes, svc.settings.client_body_timeout_seconds
    )
    manifest = _pushed(svc, name, reference, body, request.headers.get("Content-Type"))
    computed = manifest.digest
    await gate.check_reuse(request, name, computed)
    headers = {"Content-Type": manifest.media_type}
    async with await svc.upstream.request(
        "PUT",
        v2_path(name, "manifests", reference),
        scopes=scopes(name, "pull", "push"),
        headers=headers,
        data=body,
    ) as resp:
        record.upstream_status = resp.status
        out_headers = response_headers(resp.headers, svc.upstream.base, public(request))
        answer = await read_at_most(resp.content, 64 * 1024)
    if resp.status != 201:
        record.bytes_out = len(answer)
        return web.Response(status=resp.status, body=answer, headers=out_headers)
    upstream_digest = out_headers.get("Docker-Content-Digest", computed)
    if upstream_digest != computed:
        raise OCIError(
            Code.UPSTREAM_BAD_GATEWAY,
            "the upstream stored the manifest under a different digest",
            {"expected": computed, "actual": upstream_digest},
        )
    record.digest = computed
    try:
        await _index_pushed(svc, name, reference, manifest, record.identity)
    except DATABASE_ERRORS as exc:
        log.error("could not index %s@%s: %s", name, computed, exc)
        raise OCIError(
            Code.UNAVAILABLE,
            "the manifest was stored upstream but the gatekeeper could not record it; "
            "push it again",
            {"digest": computed},
        ) from exc
    if manifest.subject_digest:
        out_headers["OCI-Subject"] = manifest.subject_digest
    record.bytes_out = 0
    return web.Response(status=201, headers=out_headers)


async def _index_pushed(
    svc: Services, name: str, reference: str, manifest: ManifestRecord, pusher: str
) -> None:
    """A pushed manifest is indexed and starts pending, and comes from here
    (``config.remotes``): both in one write transaction (one turn on SQLite's write lock,
    where pushes queue under load), run whole in the writer thread (``storage.writer``: it
    reads only its arguments and the service's settings). A signature, SBOM or attestation
    re-evaluates the image it is about (OCI ``subject``, or cosign's ``sha256-<hex>.sig`` tag
    scheme) in that same transaction: a worker that takes up the referrer's own job finds the
    image's re-verification already queued and waits for it (``services.examine``). Queued
    after the referrer's job, a worker could decide the referrer first, against the image's
    verdict from before the signature, and quarantine it for a subject not pullable: it would
    stay unpullable after the image passed, until decided again."""
    tag = None if is_digest(reference) else reference
    about: list[tuple[str, str]] = []
    if manifest.subject_digest:
        about.append((manifest.subject_digest, "a referrer was pushed"))
    cosign = read_cosign_tag(reference)
    if cosign:
        about.append((cosign.subject, f"cosign {cosign.kind} pushed"))

    async def index(session: AsyncSession) -> None:
        await record_manifest(session, manifest, tag)
        await svc.verification.queue(
            session, name, manifest.digest, "pushed", identity=pusher, pushed=True
        )
        for subject, reason in about:
            await _reevaluate(svc, session, name, subject, reason, pusher)

    await transact(svc.db, index)
    await svc.verification.announce()


async def _reevaluate(
    svc: Services, session: AsyncSession, name: str, subject: str, reason: str, pusher: str
) -> None:
    """Re-verify ``subject`` where a signature or attestation about it counts: in this
    repository, and in each other repository whose signature rule keeps its signatures here
    (cosign's ``COSIGN_REPOSITORY``). A referrer pushed anywhere else triggers nothing there:
    pushing in ``other/x`` must not queue work on ``team/secret``. When the subject is an index,
    its platform images are re-verified too (a signature on the index covers them)."""
    here = await get_manifest(session, name, subject) is not None
    elsewhere = {v.repository for v in await verdicts.by_digest(session, subject)}
    children = await content.children(session, name, subject) if here else []
    queue = partial(svc.verification.queue, session, identity=pusher)
    # Only where the image is: a signature repository holds no image, and a pending verdict
    # there would be a phantom that no job can ever settle. An image pushed after its
    # signature is verified on its own push.
    if here or name in elsewhere:
        await queue(name, subject, reason)
    for child in children:
        await queue(name, child, f"{reason} to index {subject}, which lists it")
    for other in sorted(elsewhere - {name}):
        if name in svc.verification.signature_repositories(other):
            await queue(other, subject, f"{reason} to {name}")


async def delete(request: web.Request) -> web.StreamResponse:
    record = info(request)
    record.action = "manifest.delete"
    name = repository(request)
    reference = _reference(request)
    svc = services(request)
    async with await svc.upstream.request(
        "DELETE", v2_path(name, "manifests", reference), scopes=scopes(name, "delete")
    ) as resp:
        record.upstream_status = resp.status
        out_headers = response_headers(resp.headers, svc.upstream.base, public(request))
        answer = await read_at_most(resp.content, 64 * 1024)
    if resp.status == 202 and is_digest(reference):
        async with svc.db() as session, session.begin():
            await forget_manifest(session, name, reference)
        gone = await vex_intake.referrer_deleted(svc.db, name, reference, record.identity)
        if gone is not None:  # what the VEX let through is decided again without it
            await svc.policies.apply(
                f"VEX {gone.id} withdrawn: {vex_intake.DELETED} by {record.identity}"
            )
    record.bytes_out = len(answer)
    return web.Response(status=resp.status, body=answer, headers=out_headers)
