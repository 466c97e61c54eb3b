"""The CycloneDX document of an inventory: valid, complete, and quiet (issue 16: the library
warned about an incomplete dependency graph on the stderr of every ``gatekeeper sbom``)."""

from __future__ import annotations

import json
import warnings

from verifiers.scan.cyclonedx import to_cyclonedx
from verifiers.scan.model import ImageInventory, OsRelease, Package

LIBC = Package("deb", "libc6", "2.36-9", "var/lib/dpkg/status", "sha256:l", "glibc")
URLLIB3 = Package(
    "pypi", "urllib3", "1.26.12", "x/METADATA", "sha256:l", purl="pkg:pypi/urllib3@1.26.12"
)


def test_the_image_depends_on_everything_it_holds_and_nothing_warns() -> None:
    inventory = ImageInventory(OsRelease("debian", "12"), (LIBC, URLLIB3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        document = json.loads(to_cyclonedx("team/app", "sha256:i", inventory))
        empty = json.loads(to_cyclonedx("team/app", "sha256:e", ImageInventory(None, ())))
    assert [str(w.message) for w in caught] == []
    refs = [c["bom-ref"] for c in document["components"]]
    assert len(refs) == 3 and "os:debian" in refs
    (root,) = [d for d in document["dependencies"] if d["ref"] == "sha256:i"]
    assert sorted(root["dependsOn"]) == sorted(refs)
    assert empty["metadata"]["component"]["bom-ref"] == "sha256:e"
