"""``/keys/gatekeeper.json`` and ``/keys/gatekeeper.pem``: the public keys the gatekeeper's
verification summaries and access-log checkpoints verify with.

Open to anyone (a public key is public): admission controllers and auditors fetch it once and
pin it. The JSON lists every key still vouched for, the active one first, each with its
``kid`` (the ``keyid`` of the DSSE signatures); the PEM is the active key alone, as
``cosign verify-attestation --key`` takes it. Without a signing key both answer 404.
"""

from __future__ import annotations

from aiohttp import web

from oci.errors import Code, OCIError
from proxy.attest.keys import GatekeeperKeys
from proxy.auth.keyring import public_pem

GATEKEEPER_KEYS: web.AppKey[GatekeeperKeys] = web.AppKey("gatekeeper_keys", GatekeeperKeys)


def _keys(request: web.Request) -> GatekeeperKeys:
    keys = request.config_dict.get(GATEKEEPER_KEYS)
    if keys is None or not keys.verifying:
        raise OCIError(Code.NOT_FOUND, "the gatekeeper has no signing key", None)
    return keys


async def get_json(request: web.Request) -> web.StreamResponse:
    return web.json_response(_keys(request).document())


async def get_pem(request: web.Request) -> web.StreamResponse:
    keys = _keys(request)
    if keys.signer is None:
        raise OCIError(Code.NOT_FOUND, "the gatekeeper has no active signing key", None)
    return web.Response(text=public_pem(keys.signer.public), content_type="application/x-pem-file")
