"""A Docker/Distribution token server for tests: Basic credentials in, ES256 JWTs out.

Distribution 2.8 (``registry/auth/token/token.go``, ``VerifySigningKey``) finds the signing key
from the JWT header in this order: ``x5c`` (a chain that must verify against
``rootcertbundle``), ``jwk``, or ``kid``, which it reads as the libtrust fingerprint of one of
the bundle's certificate keys. This server uses ``kid``: the bundle holds one self-signed
certificate for its key. Signatures are raw ``R || S`` (JWS), not DER. Each token grants exactly
the scopes asked for, and every request is recorded so tests can check what was asked.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME = 300


@dataclass(frozen=True)
class TokenRequest:
    """One ``GET /token`` as the token server saw it."""

    service: str | None
    scopes: tuple[str, ...]
    """In the order the client sent them."""
    authenticated: bool
    """Whether the Basic credentials were the right ones (only then is a token issued)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """libtrust's fingerprint: base32 of the first 240 bits of SHA-256 of the DER
    SubjectPublicKeyInfo, in 12 colon-separated groups of 4."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _access(scope: str) -> dict[str, Any]:
    """``repository:team/app:pull,push`` -> the token's ``access`` entry for it."""
    kind, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    return {"type": kind, "name": name, "actions": actions.split(",")}


class TokenServer:
    """A loopback token server in a thread; ``rootcertbundle`` is the file for the registry."""

    def __init__(
        self, workdir: Path, *, username: str, password: str, service: str, issuer: str
    ) -> None:
        self.service = service
        self.issuer = issuer
        self._credentials = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.key_id = libtrust_key_id(self._key.public_key())
        self.rootcertbundle = workdir / "token-signer.pem"
        self.rootcertbundle.write_bytes(
            self._certificate().public_bytes(serialization.Encoding.PEM)
        )
        self.requests: list[TokenRequest] = []
        self.issued: list[str] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/token"

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.issued.clear()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _certificate(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )

    def issue(self, subject: str, scopes: tuple[str, ...]) -> str:
        """A signed JWT granting exactly ``scopes``."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.key_id}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [_access(scope) for scope in scopes],
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        query = parse_qs(urlsplit(path).query)
        authenticated = authorization == self._credentials
        scopes = tuple(query.get("scope", []))
        with self._lock:
            self.requests.append(
                TokenRequest(
                    service=query.get("service", [None])[0],
                    scopes=scopes,
                    authenticated=authenticated,
                )
            )
        if not authenticated:
            return 401, {"details": "bad credentials"}
        token = self.issue("gatekeeper", scopes)
        with self._lock:
            self.issued.append(token)
        return 200, {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path != "/token":
                    status, body = 404, {"details": "no such endpoint"}
                else:
                    status, body = server._answer(self.path, self.headers.get("Authorization"))
                raw = json.dumps(body).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="token"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler
