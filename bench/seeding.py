"""The set-up both benchmarks share: a registry on fresh storage holding one big random layer.

The layer is pushed straight into the registry with curl, streamed from disk, so seeding never
goes through anything under test. Everything created lives under temporary directories that the
caller's ExitStack removes (unless asked to keep them for a post-mortem).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import registry_api
from bench.blobs import RandomLayer, scratch_dir
from bench.errors import BenchError
from bench.image import SmallImage, image_for
from tests.support.registry import Registry, make_registry

REPO = "bench/layer"
TAG = "latest"


class Progress:
    """Timestamped progress lines on stderr, so a five-minute run is never silent."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Seeded:
    """A running registry with ``REPO:TAG`` pushed, and where its pieces live."""

    registry: Registry
    layer: RandomLayer
    """The layer as pushed; also the source of unique variants for push measurements."""
    image: SmallImage
    workdir: Path
    """Temporary directory for the registry and any servers put in front of it."""


def seed_registry(
    stack: ExitStack, client: httpx.Client, size: int, *, keep: bool, progress: Progress
) -> Seeded:
    """Start a registry and push a ``size``-byte random layer and an image referencing it."""
    workdir = _temporary(stack, Path(tempfile.gettempdir()), keep=keep)
    scratch = _temporary(stack, scratch_dir(workdir, size), keep=keep)
    try:
        registry = make_registry(workdir / "registry")
    except (RuntimeError, OSError) as exc:
        raise BenchError(f"registry did not start: {exc}") from exc
    stack.callback(registry.stop)
    progress.say(f"writing a {size >> 20} MiB random layer to {scratch}")
    layer = RandomLayer.create(scratch / "layer.tar", size)
    image = image_for(layer.blob)
    registry_api.push_blob_file(client, registry.url, REPO, layer.blob)
    registry_api.push_image(client, registry.url, REPO, TAG, image)
    progress.say(f"seeded {registry.url}/{REPO}:{TAG}, layer {layer.blob.digest[:19]}...")
    return Seeded(registry=registry, layer=layer, image=image, workdir=workdir)


def _temporary(stack: ExitStack, parent: Path, *, keep: bool) -> Path:
    path = Path(tempfile.mkdtemp(prefix="gatekeeper-bench-", dir=parent))
    if not keep:
        stack.callback(shutil.rmtree, path, ignore_errors=True)
    return path
