"""First pulls of new images: the gatekeeper's verification on the pull path, against direct.

``python -m bench.first_pulls --count 30``: a registry, and a gatekeeper in front of it with the
registry's storage mounted and the bench's config-sanity policy (``bench.targets``). ``2 x
count`` distinct images are pushed straight into the registry, so the gatekeeper has never seen
any of them; then, alternating, one is fetched by tag from the registry directly and another
through the gatekeeper, each once: every gatekeeper GET is a first pull, which verifies the
image before it answers (retried while the gate says "pending", as a client would). One
untimed first pull each way first (connections, the first request's set-up). Reported: the
median, quartiles and the ratio of the medians (the goal: at most 10x direct's).
``--gatekeeper-env KEY=VALUE`` adds to the gatekeeper's environment, e.g.
``GATEKEEPER_VERIFICATION__INLINE_FIRST_PULLS=false`` for the worker path in the same build;
``--database postgres`` puts its database in a private PostgreSQL cluster (initdb + pg_ctl),
``--workers N`` serves from N processes (``serve --workers``; verification then has its own).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.first_pull import first_manifest_get
from bench.image import MANIFEST_MEDIA_TYPE, SmallImage
from bench.targets import GATEKEEPER_ENV
from tests.support import postgres
from tests.support.gatekeeper import make_gatekeeper
from tests.support.ocihttp import image_config, push_image
from tests.support.registry import make_registry

REPO = "bench/first"


def _images(http: httpx.Client, prefix: str, count: int) -> list[tuple[str, SmallImage]]:
    """``count`` distinct images (each its own config) sharing one small layer, by tag."""
    layer = os.urandom(4096)
    pushed = []
    for n in range(count):
        tag = f"{prefix}{n}"
        digest, manifest = push_image(http, REPO, tag, [layer], image_config({"n": tag}))
        pushed.append((tag, SmallImage(b"", "", manifest, digest)))
    return pushed


def _direct_get(http: httpx.Client, url: str, image: SmallImage) -> float:
    start = time.perf_counter()
    response = http.get(url, headers={"Accept": MANIFEST_MEDIA_TYPE})
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or response.content != image.manifest:
        raise RuntimeError(f"direct GET {url} -> {response.status_code}")
    return elapsed


def measure(
    count: int, extra_env: dict[str, str], database: str = "sqlite"
) -> tuple[list[float], list[float]]:
    """Milliseconds of each direct GET and of each first pull through the gatekeeper."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="first-pulls-")))
        registry = make_registry(workdir / "registry")
        stack.callback(registry.stop)
        with httpx.Client(base_url=registry.url, timeout=60, trust_env=False) as http:
            direct_images = _images(http, "d", count + 1)
            gated_images = _images(http, "g", count + 1)
        env = {**GATEKEEPER_ENV, "GATEKEEPER_VERIFICATION__FIRST_PULL_HOLD_SECONDS": "30"}
        if database == "postgres":
            env["GATEKEEPER_DATABASE_URL"] = postgres.cluster_url(stack, workdir / "pg")
        gatekeeper = make_gatekeeper(
            workdir / "gatekeeper",
            registry.url,
            storage_root=registry.storage_root,
            extra_env={**env, **extra_env},
        )
        stack.callback(gatekeeper.stop)
        direct: list[float] = []
        gated: list[float] = []
        with httpx.Client(timeout=120, trust_env=False) as http:
            for (d_tag, d_image), (g_tag, g_image) in zip(direct_images, gated_images, strict=True):
                d_url = f"{registry.url}/v2/{REPO}/manifests/{d_tag}"
                g_url = f"{gatekeeper.url}/v2/{REPO}/manifests/{g_tag}"
                direct.append(_direct_get(http, d_url, d_image) * 1000)
                gated.append(first_manifest_get(http, g_url, g_image) * 1000)
        return direct[1:], gated[1:]


def _summary(values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"median {median:.1f} ms (p25 {q1:.1f}, p75 {q3:.1f}, min {min(values):.1f})"


def main(count: int, extra_env: dict[str, str], database: str, workers: int) -> int:
    extra = {"GATEKEEPER_WORKERS": str(workers), **extra_env}
    direct, gated = measure(count, extra, database)
    ratio = statistics.median(gated) / statistics.median(direct)
    print(f"direct:     {_summary(direct)}")
    print(f"gatekeeper: {_summary(gated)}")
    print(f"first pull / direct (medians): {ratio:.1f}x (goal <= 10x)")
    return 0


if __name__ == "__main__":
    from bench.cli import first_pulls

    sys.exit(first_pulls())
