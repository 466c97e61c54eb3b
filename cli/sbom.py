"""``gatekeeper sbom REPO@DIGEST``: the stored package inventory of an image, as CycloneDX JSON.

Reads the database only (the ``inventory`` verifier wrote it when the image was verified); an
image never inventoried is an error that says so, not an empty SBOM.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from cli.config import add_config, settings_for


def _reference(value: str) -> tuple[str, str]:
    repository, sep, digest = value.partition("@")
    if not sep or not repository or not digest.startswith("sha256:"):
        raise argparse.ArgumentTypeError("expected REPOSITORY@sha256:<hex>")
    return repository, digest


def cmd_sbom(args: argparse.Namespace) -> int:
    from storage.db import create_engine, sessionmaker
    from storage.inventory import DbInventoryStore
    from verifiers.scan.cyclonedx import to_cyclonedx

    settings = settings_for(args)
    repository, digest = args.image

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            return await DbInventoryStore(sessionmaker(engine)).load(repository, digest)
        finally:
            await engine.dispose()

    inventory = asyncio.run(run())
    if inventory is None:
        raise LookupError(
            f"{repository}@{digest} has no inventory: it was not verified with the "
            "inventory verifier enabled"
        )
    print(to_cyclonedx(repository, digest, inventory))
    return 0


def add_sbom_command(sub: Any) -> None:
    sbom = sub.add_parser("sbom", help="print an image's package inventory as CycloneDX JSON")
    sbom.add_argument("image", type=_reference, metavar="REPOSITORY@DIGEST")
    add_config(sbom)
    sbom.set_defaults(func=cmd_sbom)
