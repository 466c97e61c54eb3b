"""What the content checks add to a layer read, on the scan benchmark's image, in one run.

``python -m bench.content_bench`` builds (or, with ``--keep-image``, reuses) the image of
``bench.scan_image`` and reads every layer of it, round-robin for ``--repeats`` rounds, through
the gatekeeper's shared read (``verifiers.layers.LayerReads``) with:

- **reader**: no scanner at all, the floor of any scan (as in ``bench.scan_bench``);
- **inventory**: the inventory scanner alone;
- **secrets**: inventory and secrets in one read (what enabling ``secrets`` costs);
- **content**: inventory, secrets, malware (a one-line denylist) and hardening in one read,
  what the gatekeeper does for a new image with every layer verifier enabled.

All with the verifiers' default options (no time limit). It reports the medians of CPU and
wall seconds, MB/s of tar, each contender over ``inventory``, and the content hits of the last
round per rule (how noisy the checks are on real files). CPU is the figure to compare on a
shared machine: wall time also counts waiting for a core.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.scan_bench import LayoutBlobs, Timings, _timed, read_only
from bench.scan_image import BuiltImage, load_or_build
from bench.seeding import Progress
from verifiers.content.hardening import HardeningVerifier
from verifiers.content.hits import LayerHits
from verifiers.content.malware import MalwareVerifier
from verifiers.content.secrets import SecretsVerifier
from verifiers.layers import LayerReads, LayerScanner
from verifiers.scan.limits import ScanLimits
from verifiers.scan.verifier import inventory_scanner

READER, INVENTORY, SECRETS, CONTENT = "reader", "inventory", "secrets", "content"
NO_TIME_LIMIT = {"max_seconds": 3600.0}
"""A slow machine should give a slow figure, not a ``layer.timeout``."""


def scanners(denylist: Path) -> dict[str, list[LayerScanner[Any]]]:
    """The scanners each contender runs in its one read per layer."""
    inventory = inventory_scanner(ScanLimits.model_validate(NO_TIME_LIMIT))
    secrets = SecretsVerifier(dict(NO_TIME_LIMIT)).scanner
    malware = MalwareVerifier({**NO_TIME_LIMIT, "denylist": str(denylist)}).scanner
    hardening = HardeningVerifier(dict(NO_TIME_LIMIT)).scanner
    return {
        INVENTORY: [inventory],
        SECRETS: [inventory, secrets],
        CONTENT: [inventory, secrets, malware, hardening],
    }


async def shared_read(image: BuiltImage, wanted: list[LayerScanner[Any]]) -> dict[str, Any]:
    """Every layer read once for all of ``wanted``; each scanner's results by name."""
    blobs = LayoutBlobs(image.layout)
    reads = LayerReads(None)
    for scanner in wanted:
        reads.register(scanner)
    results: dict[str, Any] = {}
    for layer in image.layers:
        # together, as the pipeline's verifiers ask: without a layer cache, a scanner asking
        # after the read is over would start a read of its own
        values = await asyncio.gather(*(reads.result(s, layer.digest, blobs) for s in wanted))
        for scanner, value in zip(wanted, values, strict=True):
            results.setdefault(scanner.name, []).append(value)
    if reads.reads != len(image.layers):
        raise RuntimeError(f"{reads.reads} reads for {len(image.layers)} layers")
    return results


def hit_counts(results: dict[str, Any]) -> Counter[str]:
    """Hits (and files not inspected) per rule, over every layer and content scanner."""
    counts: Counter[str] = Counter()
    for name, per_layer in results.items():
        for value in per_layer:
            if isinstance(value, LayerHits):
                counts.update(hit.rule_id for hit in value.hits)
                for rule, more in value.overflow.items():
                    counts[rule] += more
                for why, n in value.not_inspected.items():
                    counts[f"{name}: {why}"] += n
    return counts


def _run(image: BuiltImage, wanted: list[LayerScanner[Any]]) -> dict[str, Any]:
    return asyncio.run(shared_read(image, wanted))


def measure(
    image: BuiltImage, repeats: int, progress: Progress, denylist: Path
) -> tuple[Timings, Counter[str]]:
    """Round-robin over the contenders, so a busy minute is spread over all of them."""
    timings = Timings()
    counts: Counter[str] = Counter()
    contenders = scanners(denylist)
    for round_ in range(repeats):
        _, wall, cpu = _timed(lambda: asyncio.run(read_only(image)))
        timings.add(READER, wall, cpu)
        for name, wanted in contenders.items():
            results, wall, cpu = _timed(functools.partial(_run, image, wanted))
            timings.add(name, wall, cpu)
            if name == CONTENT:
                counts = hit_counts(results)
        progress.say(
            f"round {round_ + 1}: "
            + ", ".join(f"{n} {timings.cpu[n][-1]:.2f}s CPU" for n in timings.cpu)
        )
    return timings, counts


def render(image: BuiltImage, timings: Timings, counts: Counter[str]) -> str:
    tar_mb = image.uncompressed_bytes / 1e6
    lines = [
        f"image: {len(image.layers)} gzip layers, {image.compressed_bytes / 1e6:.0f} MB "
        f"compressed, {tar_mb:.0f} MB tar",
        "",
        f"{'':<11}{'CPU s':>8}{'MB/s tar':>9}{'/ inv':>7}{'wall s':>8}   CPU runs",
    ]
    base = timings.median(INVENTORY, cpu=True)
    for name in timings.cpu:
        cpu, wall = timings.median(name, cpu=True), timings.median(name)
        runs = " ".join(f"{v:.2f}" for v in timings.cpu[name])
        lines.append(
            f"{name:<11}{cpu:8.2f}{tar_mb / cpu:9.1f}{cpu / base:7.2f}{wall:8.2f}   {runs}"
        )
    lines += ["", "content hits of the last round (rule: count):"]
    lines += [f"  {rule}: {n}" for rule, n in sorted(counts.items())] or ["  none"]
    return "\n".join(lines)


def main(repeats: int, keep_image: Path | None) -> int:
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="gatekeeper-content-") as scratch:
        layout = keep_image or Path(scratch) / "image"
        progress.say(f"building the image from this machine's files in {layout}")
        image = load_or_build(layout)
        denylist = Path(scratch) / "denylist.sha256"
        denylist.write_text("0" * 64 + "\n")
        progress.say(f"built {image.compressed_bytes / 1e6:.0f} MB; measuring")
        timings, counts = measure(image, repeats, progress, denylist)
        print(render(image, timings, counts))
    return 0


if __name__ == "__main__":
    from bench.cli import content_bench

    sys.exit(content_bench())
