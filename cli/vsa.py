"""``gatekeeper vsa show|verify``: the verification summaries the gatekeeper signed.

``show REPO@DIGEST`` lists an image's summaries from the database (dated, newest last, with
whether each reached the registry) and prints the newest statement. ``verify`` checks a
summary with nothing but the gatekeeper's public key, as a downstream tool would: a bundle
file, or the summaries fetched through the referrers API of a registry (the gatekeeper's own
address, as clients pull through it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from cli.audit_chain import _config, _trusted, _with_db
from cli.config import settings_for
from cli.users import UsageError
from config.text import visible
from oci.errors import OCIError
from proxy.attest import summaries
from proxy.attest.dsse import EnvelopeError
from proxy.names import check_name

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def add_vsa_commands(sub: Any) -> None:
    parser = sub.add_parser("vsa", help="the verification summaries the gatekeeper signs")
    commands = parser.add_subparsers(dest="vsa_command", required=True)
    show = commands.add_parser("show", help="an image's summaries, the newest statement")
    show.add_argument("image", help="REPOSITORY@sha256:<hex>")
    show.add_argument("--json", action="store_true", help="the newest bundle, as pushed")
    _config(show)
    show.set_defaults(func=cmd_show)
    verify = commands.add_parser(
        "verify",
        help="check a summary with only the gatekeeper's public key",
        description="Verify a summary bundle FILE, or with --registry the summaries of "
        "REPOSITORY@DIGEST fetched through the referrers API. Exit 0 when the newest one "
        "verifies and says PASSED for that digest; 1 otherwise.",
    )
    verify.add_argument("target", help="a bundle file, or REPOSITORY@DIGEST with --registry")
    verify.add_argument("--key", type=Path, action="append", required=True, metavar="PEM")
    verify.add_argument("--registry", metavar="URL", help="e.g. https://gatekeeper.example")
    verify.add_argument("--token", help="a bearer token for the registry")
    verify.add_argument("--digest", help="with a FILE: the image digest it must be about")
    _config(verify)  # unused (only the key is trusted), accepted like every command's
    verify.set_defaults(func=cmd_verify)


def _image(value: str) -> tuple[str, str]:
    repository, at, digest = value.partition("@")
    if not at or not digest.startswith("sha256:") or len(digest) != 71:
        raise UsageError(f"{visible(value)}: give REPOSITORY@sha256:<hex>")
    try:
        check_name(repository)
    except OCIError as exc:
        raise UsageError(f"{visible(value)}: {exc.message}") from exc
    return repository, digest


def cmd_show(args: argparse.Namespace) -> int:
    from storage import attestations

    repository, digest = _image(args.image)
    settings = settings_for(args)

    async def run(db: Any) -> list[attestations.Attestation]:
        async with db() as session:
            return await attestations.of_image(session, repository, digest)

    found = asyncio.run(_with_db(settings, run))
    if not found:
        print(f"no verification summary of {visible(args.image)}")
        return 1
    if args.json:
        print(found[-1].bundle)
        return 0
    for item in found:
        where = item.referrer or f"not pushed yet ({item.attempts} attempts)"
        if item.state == attestations.FAILED:
            where = f"push FAILED after {item.attempts} attempts: {visible(item.error or '')}"
        print(f"{item.created_at.isoformat(timespec='seconds')}  {item.result:6}  {where}")
    print(json.dumps(summaries.decode_payload(json.loads(found[-1].bundle)), indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    keys = _trusted(args.key)
    if args.registry:
        repository, digest = _image(args.target)
        bundles = _fetch(args.registry, repository, digest, args.token)
        if not bundles:
            print(f"no verification summary is listed for {visible(args.target)}")
            return 1
    else:
        try:
            bundles = [json.loads(Path(args.target).read_text())]
        except (OSError, ValueError) as exc:
            raise UsageError(f"{visible(args.target)}: {exc}") from exc
        digest = args.digest
    return _report(bundles, keys, digest)


def _report(
    bundles: list[Any], keys: dict[str, ec.EllipticCurvePublicKey], digest: str | None
) -> int:
    """The newest summary that verifies decides; others that do not are reported."""
    opened: list[summaries.Opened] = []
    for bundle in bundles:
        try:
            opened.append(summaries.open_bundle(bundle, keys))
        except EnvelopeError as exc:
            print(f"a summary does not verify: {exc}")
    if digest is not None:
        opened = [o for o in opened if o.subject_digest == digest]
    if not opened:
        print("no summary verifies with the given key" + (f" for {digest}" if digest else ""))
        return 1
    newest = max(opened, key=lambda o: str(o.statement["predicate"].get("timeVerified")))
    predicate = newest.statement["predicate"]
    print(
        f"verified (key {newest.kid}): {newest.subject_digest} {newest.result} at "
        f"{predicate.get('timeVerified')} by {predicate.get('verifier', {}).get('id')} "
        f"under {predicate.get('policy', {}).get('uri')}"
    )
    return 0 if newest.result == summaries.PASSED else 1


def _fetch(registry: str, repository: str, digest: str, token: str | None) -> list[Any]:
    """Every summary bundle listed as a referrer of the image, read through the registry."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = registry.rstrip("/")
    with httpx.Client(headers=headers, timeout=30, follow_redirects=True) as client:
        listed = client.get(
            f"{base}/v2/{repository}/referrers/{digest}",
            params={"artifactType": summaries.BUNDLE_TYPE},
        )
        _ok(listed)
        bundles = []
        for item in listed.json().get("manifests", []):
            manifest = client.get(
                f"{base}/v2/{repository}/manifests/{item['digest']}", headers={"Accept": ACCEPT}
            )
            _ok(manifest)
            for layer in manifest.json().get("layers", []):
                if layer.get("mediaType") != summaries.BUNDLE_TYPE:
                    continue
                blob = client.get(f"{base}/v2/{repository}/blobs/{layer['digest']}")
                _ok(blob)
                bundles.append(blob.json())
    return bundles


def _ok(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise UsageError(
            f"{response.request.url}: {response.status_code} {visible(response.text[:300])}"
        )
