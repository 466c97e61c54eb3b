"""Client authentication and authorization end to end: real podman, real tokens, every route."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.clients import ClientError, Podman
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.ocihttp import OCI_MANIFEST, digest_of, push_image, runnable_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e
SERVICE = "registry-gatekeeper"
POLICIES = json.dumps(
    [
        {"name": "warn", "repositories": ["*"], "mode": "warn", "require": ["config-sanity"]},
        {
            "name": "strict",
            "repositories": ["quarantined/*"],
            "require": ["config-sanity"],
            "hold_seconds": 10,
        },
    ]
)


def cli(gk: Gatekeeper, *args: str, stdin: str | None = None) -> str:
    out = run_cli(gk, *args, input=stdin)
    assert out.returncode == 0, out.stderr
    return out.stdout


def secret_of(output: str) -> str:
    return output.strip().splitlines()[-1].rsplit(" ", 1)[1]


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    """Signing with a key file (mode 0600) rather than a key sealed in the database, so the
    forgeries below can use the gatekeeper's own key."""
    workdir = tmp_path_factory.mktemp("auth")
    key_file = workdir / "token-key.pem"
    key_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    gatekeeper = make_gatekeeper(
        workdir,
        registry.url,
        extra_env={
            "GATEKEEPER_AUTH__ENABLED": "true",
            "GATEKEEPER_AUTH__ANONYMOUS_PULL": '["public/*"]',
            "GATEKEEPER_POLICIES": POLICIES,
        },
        start=False,
    )
    gatekeeper.env.pop("GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY")
    gatekeeper.env["GATEKEEPER_AUTH__SIGNING_KEY_FILE"] = str(key_file)
    gatekeeper.start()
    yield gatekeeper
    gatekeeper.stop()


@pytest.fixture(scope="module")
def accounts(gk: Gatekeeper) -> dict[str, str]:
    """Identities for the tests, each with the secret the CLI showed once."""
    made = {
        "admin": secret_of(
            cli(gk, "users", "create", "alice", "--admin", "--grant", "*=pull,push,delete")
        ),
        "reader": secret_of(cli(gk, "users", "create", "rita", "--grant", "team/*=pull")),
        "pusher": secret_of(cli(gk, "users", "create", "paul", "--grant", "team/*=pull,push")),
        "deleter": secret_of(
            cli(gk, "users", "create", "dana", "--grant", "team/*=pull,push,delete")
        ),
        "robot": secret_of(cli(gk, "robots", "create", "ci", "--grant", "team/app=pull,push")),
        "forensics": secret_of(
            cli(gk, "users", "create", "fred", "--grant", "quarantined/*=pull,quarantine-reader")
        ),
    }
    return made


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def token(gk: Gatekeeper, name: str, secret: str, *scopes: str) -> str:
    resp = httpx.get(
        f"{gk.url}/auth/token",
        params=[("service", SERVICE), *(("scope", s) for s in scopes)],
        headers=basic(name, secret),
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token"])


def test_unauthenticated_requests_are_challenged(gk: Gatekeeper) -> None:
    resp = httpx.get(f"{gk.url}/v2/")
    assert resp.status_code == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{gk.url}/auth/token",service="{SERVICE}"')
    push = httpx.post(f"{gk.url}/v2/team/app/blobs/uploads/")
    assert push.status_code == 401
    assert 'scope="repository:team/app:pull,push"' in push.headers["WWW-Authenticate"]


def test_podman_login_push_pull_with_a_robot_limited_to_one_repository(
    gk: Gatekeeper, accounts: dict[str, str], tmp_path: Path
) -> None:
    with httpx.Client(
        base_url=gk.url, headers=basic("alice", accounts["admin"]), timeout=60
    ) as http:
        runnable_image(http, "team/app", "seed", {"hello.txt": os.urandom(64)})
    with Podman(tmp_path / "podman", [gk.host]) as podman:
        podman.login(gk.host, "ci", accounts["robot"])
        podman.pull(f"{gk.host}/team/app:seed")
        pushed = podman.push(f"{gk.host}/team/app:seed", f"{gk.host}/team/app:v2")
        assert pushed.digest
        with pytest.raises(ClientError) as refused:
            podman.push(f"{gk.host}/team/app:seed", f"{gk.host}/team/other:v1")
    # podman's first request there is a blob HEAD (no body can carry our detail), so it prints
    # its own wording of the 401 insufficient_scope; the access log has the exact reason.
    assert "requested access to the resource is denied" in refused.value.stderr
    rows = gk.wait_audit(1, "identity = 'ci' AND action = 'manifest.push' AND status = 201")
    assert rows and rows[0]["repository"] == "team/app"
    denied = gk.wait_audit(1, "identity = 'ci' AND repository = 'team/other' AND status >= 400")
    assert denied and denied[0]["reason"].startswith("ci may not ")
    assert denied[0]["reason"].endswith(" team/other") and denied[0]["action"] == "blob.head"


# Every repository route, and what it needs. The table test below runs each against every
# identity and checks that exactly the allowed combinations get past authorization.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/v2/team/app/tags/list", "pull"),
    ("GET", "/v2/team/app/manifests/seed", "pull"),
    ("HEAD", "/v2/team/app/manifests/seed", "pull"),
    ("PUT", "/v2/team/app/manifests/x", "push"),
    ("DELETE", "/v2/team/app/manifests/sha256:" + "0" * 64, "delete"),
    ("POST", "/v2/team/app/blobs/uploads/", "push"),
    ("GET", "/v2/team/app/blobs/uploads/some-session", "push"),
    ("PATCH", "/v2/team/app/blobs/uploads/some-session", "push"),
    ("PUT", "/v2/team/app/blobs/uploads/some-session", "push"),
    ("DELETE", "/v2/team/app/blobs/uploads/some-session", "push"),
    ("GET", "/v2/team/app/blobs/sha256:" + "0" * 64, "pull"),
    ("HEAD", "/v2/team/app/blobs/sha256:" + "0" * 64, "pull|push"),
    ("DELETE", "/v2/team/app/blobs/sha256:" + "0" * 64, "delete"),
    ("GET", "/v2/team/app/referrers/sha256:" + "0" * 64, "pull"),
    ("GET", "/admin/api/v1/images", "admin"),
    ("GET", "/v2/_catalog", "login"),
    # Pushing into team/app, mounting from team/lib: needs push there; a caller who may not
    # pull the source gets a plain upload session instead (see the mount test).
    ("POST", "/v2/team/app/blobs/uploads/?mount=sha256:" + "0" * 64 + "&from=team/lib", "push"),
]
WHO: dict[str, set[str]] = {
    "anonymous": set(),
    "reader": {"pull", "login"},
    "pusher": {"pull", "push", "login"},
    "deleter": {"pull", "push", "delete", "login"},
    "admin": {"pull", "push", "delete", "admin", "login"},
}
NAMES = {"reader": "rita", "pusher": "paul", "deleter": "dana", "admin": "alice"}


@pytest.mark.parametrize("who", list(WHO))
@pytest.mark.parametrize(("method", "path", "need"), ROUTES)
def test_every_route_by_every_permission(
    gk: Gatekeeper, accounts: dict[str, str], who: str, method: str, path: str, need: str
) -> None:
    headers = basic(NAMES[who], accounts[who]) if who != "anonymous" else {}
    resp = httpx.request(method, f"{gk.url}{path}", headers=headers, timeout=30)
    allowed = any(n in WHO[who] for n in need.split("|"))
    refused = resp.status_code in (401, 403)
    if allowed:
        assert not refused, (who, method, path, resp.status_code, resp.text)
    else:
        assert refused, (who, method, path, resp.status_code, resp.text)
        if resp.status_code == 403 and path.startswith("/v2/"):
            assert resp.json()["errors"][0]["code"] == "DENIED"


def test_mount_needs_pull_on_the_source(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    with httpx.Client(
        base_url=gk.url, headers=basic("alice", accounts["admin"]), timeout=60
    ) as http:
        _, _ = push_image(http, "secret/app", "v1", [layer := os.urandom(3000)])
    with httpx.Client(
        base_url=gk.url, headers=basic("paul", accounts["pusher"]), timeout=60
    ) as http:
        resp = http.post(f"/v2/team/mount/blobs/uploads/?mount={digest_of(layer)}&from=secret/app")
    # Not a mount (201) but a plain upload session (202): nothing learned about secret/app.
    assert resp.status_code == 202


def test_catalog_lists_only_pullable_repositories(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    with httpx.Client(
        base_url=gk.url, headers=basic("alice", accounts["admin"]), timeout=60
    ) as http:
        push_image(http, "team/listed", "v1", [os.urandom(100)])
        push_image(http, "hidden/app", "v1", [os.urandom(100)])
        everything = http.get("/v2/_catalog?n=1000").json()["repositories"]
    assert {"team/listed", "hidden/app"} <= set(everything)
    as_reader = httpx.get(
        f"{gk.url}/v2/_catalog?n=1000", headers=basic("rita", accounts["reader"])
    ).json()["repositories"]
    assert "team/listed" in as_reader and "hidden/app" not in as_reader
    assert all(name.startswith(("team/", "public/")) for name in as_reader)


def test_anonymous_pull_where_enabled(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    with httpx.Client(
        base_url=gk.url, headers=basic("alice", accounts["admin"]), timeout=60
    ) as http:
        push_image(http, "public/base", "v1", [os.urandom(100)])
    anon = httpx.get(
        f"{gk.url}/auth/token",
        params={"service": SERVICE, "scope": "repository:public/base:pull,push"},
    )
    assert anon.status_code == 200
    claims = jwt.decode(anon.json()["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "public/base", "actions": ["pull"]}]
    pulled = httpx.get(
        f"{gk.url}/v2/public/base/manifests/v1",
        headers={"Authorization": f"Bearer {anon.json()['token']}", "Accept": OCI_MANIFEST},
    )
    assert pulled.status_code == 200
    private = httpx.get(f"{gk.url}/v2/team/app/manifests/seed", headers={"Accept": OCI_MANIFEST})
    assert private.status_code == 401


def test_token_grants_only_what_is_allowed(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    granted = token(gk, "rita", accounts["reader"], "repository:team/app:pull,push,delete")
    claims = jwt.decode(granted, options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert claims["aud"] == SERVICE
    push = httpx.post(
        f"{gk.url}/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {granted}"}
    )
    # Distribution's answer to a token lacking the scope: 401 with insufficient_scope.
    assert push.status_code == 401
    assert 'error="insufficient_scope"' in push.headers["WWW-Authenticate"]
    assert push.json()["errors"][0]["code"] == "DENIED"


def test_oauth2_password_grant(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    resp = httpx.post(
        f"{gk.url}/auth/token",
        data={
            "grant_type": "password",
            "username": "paul",
            "password": accounts["pusher"],
            "service": SERVICE,
            "scope": "repository:team/app:pull,push",
            "client_id": "test",
        },
    )
    assert resp.status_code == 200, resp.text
    claims = jwt.decode(resp.json()["access_token"], options={"verify_signature": False})
    assert claims["access"][0]["actions"] == ["pull", "push"]


@pytest.mark.parametrize("name", ["pa\x00ul", "paul\n", "pa\x1bul"])
def test_a_name_with_a_control_character_is_refused_before_the_database(
    gk: Gatekeeper, name: str
) -> None:
    """On PostgreSQL a NUL in the name reached a query, which failed: 503 "the database is
    unavailable" to anyone sending that header."""
    answers = [
        httpx.get(f"{gk.url}/v2/", headers=basic(name, "any-secret-at-all")),
        httpx.get(
            f"{gk.url}/auth/token", params={"service": SERVICE}, headers=basic(name, "x" * 12)
        ),
        httpx.post(
            f"{gk.url}/auth/token",
            data={
                "grant_type": "password",
                "username": name,
                "password": "x" * 12,
                "service": SERVICE,
                "client_id": "test",
            },
        ),
    ]
    for resp in answers:
        assert resp.status_code == 401, resp.text
        assert "control character" in resp.text
    ids = [resp.headers["X-Request-Id"] for resp in answers]
    rows = gk.wait_audit(3, "request_id IN (:a, :b, :c)", dict(zip("abc", ids, strict=True)))
    assert sorted(row["status"] for row in rows) == [401, 401, 401]
    assert gk.process is not None and gk.process.poll() is None


def _forge(
    claims: dict[str, Any], key: Any, alg: str, headers: dict[str, Any] | None = None
) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": SERVICE,
        "sub": "alice",
        "aud": SERVICE,
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
        "gk_id": 1,
        "gk_ver": 1,
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}],
    }
    base.update(override)
    return base


def _alg_none(claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(gk: Gatekeeper, claims: dict[str, Any]) -> str:
    import hashlib
    import hmac

    public = (
        _own_key(gk)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": _kid(gk)}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


FORGERIES = [
    "alg-none",
    "hs256-public-key",
    "expired",
    "wrong-audience",
    "wrong-issuer",
    "other-key",
    "other-key-own-kid",
    "no-kid",
    "unknown-kid",
    "garbage",
]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_tokens_are_rejected(gk: Gatekeeper, accounts: dict[str, str], forgery: str) -> None:
    accounts  # noqa: B018  (alice must exist so only the forgery can be the reason)
    other_key = ec.generate_private_key(ec.SECP256R1())
    own = {"kid": _kid(gk)}
    makers: dict[str, Callable[[], str]] = {
        "alg-none": lambda: _alg_none(_claims()),
        "hs256-public-key": lambda: _hs256_with_public_key(gk, _claims()),
        "expired": lambda: _forge(_claims(exp=int(time.time()) - 60), _own_key(gk), "ES256", own),
        "wrong-audience": lambda: _forge(_claims(aud="other-service"), _own_key(gk), "ES256", own),
        "wrong-issuer": lambda: _forge(_claims(iss="someone-else"), _own_key(gk), "ES256", own),
        "other-key": lambda: _forge(_claims(), other_key, "ES256"),
        "other-key-own-kid": lambda: _forge(_claims(), other_key, "ES256", own),
        "no-kid": lambda: _forge(_claims(), _own_key(gk), "ES256"),
        "unknown-kid": lambda: _forge(_claims(), _own_key(gk), "ES256", {"kid": "x" * 43}),
        "garbage": lambda: "not.a.token",
    }
    forged = makers[forgery]()
    resp = httpx.get(
        f"{gk.url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {forged}"}
    )
    assert resp.status_code == 401, resp.text
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    if forgery in ("expired", "wrong-audience", "wrong-issuer", "no-kid", "unknown-kid"):
        # The same claims, correctly formed, would have worked: the check is the rejection.
        good = _forge(_claims(), _own_key(gk), "ES256", own)
        ok = httpx.get(
            f"{gk.url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {good}"}
        )
        assert ok.status_code == 200, ok.text


def _own_key(gk: Gatekeeper) -> Any:
    pem = Path(gk.env["GATEKEEPER_AUTH__SIGNING_KEY_FILE"]).read_bytes()
    return serialization.load_pem_private_key(pem, None)


def _kid(gk: Gatekeeper) -> str:
    """The RFC 7638 thumbprint of the gatekeeper's key, which names it in token headers."""
    numbers = _own_key(gk).public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {"crv": "P-256", "kty": "EC", "x": b64(numbers.x), "y": b64(numbers.y)}
    digest = hashlib.sha256(json.dumps(jwk, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_tokens_name_their_signing_key(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    issued = token(gk, "rita", accounts["reader"], "repository:team/app:pull")
    assert jwt.get_unverified_header(issued) == {"alg": "ES256", "typ": "JWT", "kid": _kid(gk)}


def test_revocation_takes_effect_at_the_next_request(gk: Gatekeeper) -> None:
    secret = secret_of(cli(gk, "robots", "create", "temp", "--grant", "team/*=pull"))
    granted = token(gk, "temp", secret, "repository:team/app:pull")
    bearer = {"Authorization": f"Bearer {granted}"}
    assert httpx.get(f"{gk.url}/v2/team/app/tags/list", headers=bearer).status_code == 200
    cli(gk, "robots", "rotate", "temp")
    after = httpx.get(f"{gk.url}/v2/team/app/tags/list", headers=bearer)
    assert after.status_code == 401 and "revoked" in after.json()["errors"][0]["message"]
    assert (
        httpx.get(f"{gk.url}/v2/team/app/tags/list", headers=basic("temp", secret)).status_code
        == 401
    )


def test_brute_force_is_throttled_and_the_owner_still_gets_in(
    gk: Gatekeeper, accounts: dict[str, str]
) -> None:
    attacker = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    statuses = []
    with attacker:
        for n in range(100):
            resp = attacker.get(
                f"{gk.url}/auth/token",
                params={"service": SERVICE},
                headers=basic("paul", f"wrong-{n}"),
            )
            statuses.append(resp.status_code)
        # Even the right password is refused from the throttled address.
        late = attacker.get(
            f"{gk.url}/auth/token",
            params={"service": SERVICE},
            headers=basic("paul", accounts["pusher"]),
        )
    assert statuses.count(429) >= 80, statuses
    assert set(statuses) <= {401, 429}
    assert late.status_code == 429
    owner = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    with owner:
        ok = owner.get(
            f"{gk.url}/auth/token",
            params={"service": SERVICE},
            headers=basic("paul", accounts["pusher"]),
        )
    assert ok.status_code == 200, ok.text
    rows = gk.wait_audit(1, "client_addr = '127.0.0.2' AND action = 'auth.token' AND status = 429")
    assert rows and "wrong-" not in json.dumps(
        gk.audit_rows("client_addr = '127.0.0.2'"), default=str
    )


def test_quarantine_reader_bypass_is_logged(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    bad_config = json.dumps({"architecture": "amd64", "rootfs": {"diff_ids": []}}).encode()
    with httpx.Client(
        base_url=gk.url, headers=basic("alice", accounts["admin"]), timeout=60
    ) as http:
        digest, _ = push_image(http, "quarantined/app", "v1", [os.urandom(100)], bad_config)
        denied = http.get("/v2/quarantined/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert denied.status_code == 403
    forensic = httpx.get(
        f"{gk.url}/v2/quarantined/app/manifests/v1",
        headers={**basic("fred", accounts["forensics"]), "Accept": OCI_MANIFEST},
    )
    assert forensic.status_code == 200
    (row,) = gk.wait_audit(1, "identity = 'fred' AND action = 'manifest.pull'")
    assert row["decision"] == "bypass" and row["digest"] == digest


def test_admin_api_with_an_admin_identity(gk: Gatekeeper, accounts: dict[str, str]) -> None:
    ok = httpx.get(f"{gk.url}/admin/api/v1/images", headers=basic("alice", accounts["admin"]))
    assert ok.status_code == 200, ok.text
    refused = httpx.get(f"{gk.url}/admin/api/v1/images", headers=basic("paul", accounts["pusher"]))
    assert refused.status_code == 403


def test_htpasswd_users_keep_their_bcrypt_passwords(gk: Gatekeeper, tmp_path: Path) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(b"migrated-password-1", bcrypt.gensalt(rounds=4)).decode()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"migrant:{hashed}\n")
    out = cli(gk, "users", "import-htpasswd", str(htpasswd), "--grant", "team/*=pull")
    assert "imported 1 users" in out
    ok = httpx.get(
        f"{gk.url}/v2/team/app/tags/list", headers=basic("migrant", "migrated-password-1")
    )
    assert ok.status_code == 200
    wrong = httpx.get(f"{gk.url}/v2/team/app/tags/list", headers=basic("migrant", "nope"))
    assert wrong.status_code == 401
    plain = tmp_path / "plain"
    plain.write_text("someone:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    refused = run_cli(gk, "users", "import-htpasswd", str(plain))
    assert refused.returncode == 2 and "only bcrypt entries" in refused.stderr


def test_bootstrap_creates_an_admin_only_once(registry: Registry, tmp_path: Path) -> None:
    gk = make_gatekeeper(
        tmp_path / "gk", registry.url, extra_env={"GATEKEEPER_AUTH__ENABLED": "true"}, start=False
    )
    secret_file = tmp_path / "admin-password"
    first = cli(gk, "users", "bootstrap", "--password-file", str(secret_file))
    assert "created admin user 'admin'" in first
    assert secret_file.stat().st_mode & 0o777 == 0o600
    password = secret_file.read_text().strip()
    assert password not in first
    secret_file.unlink()
    assert cli(gk, "users", "bootstrap", "--password-file", str(secret_file)) == ""
    assert not secret_file.exists()
    gk.start()
    try:
        resp = httpx.get(f"{gk.url}/admin/api/v1/images", headers=basic("admin", password))
        assert resp.status_code == 200, resp.text
    finally:
        gk.stop()
