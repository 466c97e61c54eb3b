"""The first manifest GET of the bench image on each target, timed and taken out of the way.

The image is pushed straight into the registry, so a gatekeeper has never seen it: its first pull
makes the gate verify the image (and may be held or told to retry while that runs). That is a
cost worth reporting on its own, but it must not land inside the timed phases, where one slow
request would skew a median; and blob pulls may be gated on the same verdict. So every target
gets this one GET first, retried while the gate answers "pending" or "unavailable", until the
manifest comes back or the gate gives a final answer.
"""

from __future__ import annotations

import json
import time

import httpx

from bench.errors import MeasurementError
from bench.image import MANIFEST_MEDIA_TYPE, SmallImage

PENDING_DEADLINE_SECONDS = 120.0
"""How long a verdict may stay pending: the built-in verifiers need seconds, not minutes."""
UNAVAILABLE_DEADLINE_SECONDS = 10.0
"""How long a 503 (verdict store down) may last before it counts as broken, not starting up."""
_RETRY_PAUSE = 0.5


def first_manifest_get(client: httpx.Client, url: str, image: SmallImage) -> float:
    """Seconds until ``url`` first returns the manifest; MeasurementError on a final denial."""
    start = time.perf_counter()
    while True:
        try:
            response = client.get(url, headers={"Accept": MANIFEST_MEDIA_TYPE}, timeout=600)
        except httpx.HTTPError as exc:
            raise MeasurementError(f"first GET {url}: {exc!r}") from exc
        elapsed = time.perf_counter() - start
        if response.status_code == 200 and response.content == image.manifest:
            return elapsed
        if elapsed > _retry_budget(response):
            raise MeasurementError(
                f"first GET {url} -> {response.status_code} after {elapsed:.1f}s: "
                f"{response.text[:400]}"
            )
        time.sleep(_RETRY_PAUSE)


def _retry_budget(response: httpx.Response) -> float:
    """Seconds worth retrying this answer for: a final answer gets none."""
    if response.status_code == 503:
        return UNAVAILABLE_DEADLINE_SECONDS
    return PENDING_DEADLINE_SECONDS if _pending(response) else -1.0


def _pending(response: httpx.Response) -> bool:
    """A ``DENIED`` whose machine-readable ``detail.state`` says verification is still running."""
    try:
        errors = json.loads(response.content).get("errors", [])
    except (ValueError, AttributeError):
        return False
    details = [error.get("detail") for error in errors if isinstance(error, dict)]
    return any(isinstance(d, dict) and d.get("state") == "pending" for d in details)
