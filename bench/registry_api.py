"""The few Distribution API calls the benchmark makes besides the timed transfers.

Small bodies (config, manifest) go through one httpx client; the big layer always goes through
curl (``bench.curl``), seeded straight into the registry and timed through every target the same
way: ``POST /v2/<name>/blobs/uploads/`` for a session, then one ``PUT ?digest=`` carrying the
whole blob, the monolithic upload most clients fall back to.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from bench import curl
from bench.blobs import BlobFile
from bench.errors import MeasurementError
from bench.image import MANIFEST_MEDIA_TYPE, SmallImage


def start_upload(client: httpx.Client, base_url: str, repo: str) -> str:
    """Open an upload session and return its absolute URL on ``base_url``.

    A ``Location`` on another origin means the target leaked its upstream: the PUT would bypass
    it and the figure would be the registry's, so that is a failure, not a silent redirect.
    """
    try:
        response = client.post(f"{base_url}/v2/{repo}/blobs/uploads/")
    except httpx.HTTPError as exc:
        raise MeasurementError(f"start upload on {base_url}: {exc!r}") from exc
    if response.status_code != 202 or "location" not in response.headers:
        raise MeasurementError(_describe("start upload", response))
    location = urljoin(f"{base_url}/", response.headers["location"])
    if urlsplit(location).netloc != urlsplit(base_url).netloc:
        raise MeasurementError(f"upload Location {location} leaves {base_url}")
    return location


def upload_url_with_digest(location: str, digest: str) -> str:
    """The session URL completed with ``digest=`` (the registry's ``_state`` query is kept)."""
    separator = "&" if urlsplit(location).query else "?"
    return f"{location}{separator}digest={digest}"


def push_blob_file(
    client: httpx.Client,
    base_url: str,
    repo: str,
    blob: BlobFile,
    cacert: Path | None = None,
) -> curl.Transfer:
    """Upload ``blob`` monolithically with curl (over https trusting ``cacert``) and check the
    registry accepted it."""
    location = start_upload(client, base_url, repo)
    transfer = curl.upload_file(upload_url_with_digest(location, blob.digest), blob.path, cacert)
    if transfer.status != 201 or transfer.uploaded != blob.size:
        raise MeasurementError(
            f"PUT {blob.size} bytes: status {transfer.status}, sent {transfer.uploaded}: "
            f"{transfer.body[:500]!r}"
        )
    return transfer


def push_image(client: httpx.Client, base_url: str, repo: str, tag: str, image: SmallImage) -> None:
    """Push the config blob and the manifest (the layer must already be there)."""
    location = start_upload(client, base_url, repo)
    try:
        put = client.put(
            upload_url_with_digest(location, image.config_digest),
            content=image.config,
            headers={"Content-Type": "application/octet-stream"},
        )
        if put.status_code != 201:
            raise MeasurementError(_describe("put config", put))
        manifest = client.put(
            f"{base_url}/v2/{repo}/manifests/{tag}",
            content=image.manifest,
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
        )
    except httpx.HTTPError as exc:
        raise MeasurementError(f"push image to {base_url}: {exc!r}") from exc
    if manifest.status_code != 201:
        raise MeasurementError(_describe("put manifest", manifest))


def forget_blob(storage_root: Path, repo: str, digest: str) -> None:
    """Remove a pushed blob from the registry's filesystem storage, data and repository link.

    The API's DELETE only unlinks the blob from the repository and leaves the gigabyte on disk
    until garbage collection, so after a dozen pushes the disk would hold a dozen gigabytes and
    the kernel would still be writing them back during later measurements. The registry keeps no
    blob cache in this configuration, so removing the files makes it forget the blob entirely.
    """
    algorithm, hexdigest = digest.split(":", 1)
    v2 = storage_root / "docker" / "registry" / "v2"
    shutil.rmtree(v2 / "blobs" / algorithm / hexdigest[:2] / hexdigest, ignore_errors=True)
    shutil.rmtree(
        v2 / "repositories" / repo / "_layers" / algorithm / hexdigest, ignore_errors=True
    )


def describe_failure(client: httpx.Client, url: str, headers: dict[str, str]) -> str:
    """Status and the start of the body of a GET that failed, without reading a blob whole."""
    try:
        with client.stream("GET", url, headers=headers) as response:
            head = b""
            for chunk in response.iter_raw():
                head += chunk
                if len(head) >= 2048:
                    break
            return f"status {response.status_code}: {head[:500]!r}"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"


def _describe(what: str, response: httpx.Response) -> str:
    return f"{what}: {response.request.url} -> {response.status_code}: {response.text[:500]}"
