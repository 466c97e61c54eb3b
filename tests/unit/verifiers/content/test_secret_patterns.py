"""Each secret rule on secrets generated here, and look-alikes that must not match."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from tests.unit.verifiers.content.conftest import (
    ALNUM,
    aws_key_id,
    aws_secret,
    docker_config,
    github_token,
    openssh_key,
    random_secret,
    random_text,
    rsa_pem,
)
from verifiers.content import secret_patterns as patterns
from verifiers.content.redact import redacted


def rules(path: str, text: str) -> list[str]:
    return [m.rule_id for m in patterns.find(path, text, 3.5)]


def evidence(path: str, text: str) -> str:
    return " | ".join(m.evidence for m in patterns.find(path, text, 3.5))


def test_rsa_and_openssh_private_keys() -> None:
    for key in (rsa_pem(), openssh_key()):
        assert rules("root/.ssh/id", key) == ["secret.private-key"]
        body = key.splitlines()[1]
        assert body[:12] not in evidence("root/.ssh/id", key)


def test_a_pem_marker_without_a_key_body_is_code_not_a_key() -> None:
    code = 'MARKER = "-----BEGIN RSA PRIVATE KEY-----"\nif line == MARKER:\n    pass\n'
    assert rules("usr/lib/python3/x.py", code) == []
    certificate = "-----BEGIN CERTIFICATE-----\n" + "A" * 64 + "\n-----END CERTIFICATE-----\n"
    assert rules("etc/ssl/certs/ca.pem", certificate) == []


def test_gcp_service_account_json_is_reported_once() -> None:
    pem = rsa_pem()
    document = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": random_text(ALNUM, 40),
        "private_key": pem,
        "client_email": "ci@demo-project.iam.gserviceaccount.com",
    }
    text = json.dumps(document)
    assert rules("app/sa.json", text) == ["secret.gcp-service-account"]
    assert pem.splitlines()[1][:12] not in evidence("app/sa.json", text)


def test_aws_key_id_and_secret() -> None:
    key_id, secret = aws_key_id(), aws_secret()
    text = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    assert rules("root/.aws/credentials", text) == ["secret.aws-access-key"] * 2
    shown = evidence("root/.aws/credentials", text)
    assert key_id[4:] not in shown and secret[:8] not in shown and secret[-8:] not in shown
    assert "AKIA… (20 chars)" in shown


def test_aws_documentation_keys_and_lookalikes_do_not_match() -> None:
    text = (
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
        "id = XAKIA1234567890ABCDEFG\n"  # embedded in a longer word
    )
    assert rules("docs/aws.txt", text) == []


def test_github_gitlab_slack_tokens() -> None:
    github = github_token()
    gitlab = "glpat-" + random_text(ALNUM, 20)
    slack = "xoxb-" + random_text("0123456789", 12) + "-" + random_text(ALNUM, 24)
    text = f"GITHUB={github}\nGITLAB={gitlab}\nSLACK={slack}\n"
    assert sorted(rules("app/run.sh", text)) == [
        "secret.github-token",
        "secret.gitlab-token",
        "secret.slack-token",
    ]
    shown = evidence("app/run.sh", text)
    assert "ghp_… (40 chars)" in shown and "glpat-… (26 chars)" in shown
    for token in (github, gitlab, slack):
        assert token[6:] not in shown


def test_short_or_wrong_prefix_tokens_do_not_match() -> None:
    text = "ghp_short\nghx_" + random_text(ALNUM, 36) + "\nglpat-short\nxoxz-1234567890\n"
    assert rules("app/x.txt", text) == []


def test_registry_credentials() -> None:
    password = random_text(ALNUM, 24)
    assert rules("root/.docker/config.json", docker_config(password)) == [
        "secret.registry-credentials"
    ]
    npm_token = "npm_" + random_text(ALNUM, 36)
    npmrc = f"//registry.npmjs.org/:_authToken={npm_token}\n"
    assert rules("home/app/.npmrc", npmrc) == ["secret.registry-credentials"]
    pypirc = f"[pypi]\nusername = __token__\npassword = pypi-{password}\n"
    assert rules("root/.pypirc", pypirc) == ["secret.registry-credentials"]
    cut_short = docker_config(password)[:-1]  # not JSON: the fields as written
    assert evidence("root/.docker/config.json", cut_short).startswith("auth … (")
    for path, text in (
        ("root/.docker/config.json", cut_short),
        ("root/.docker/config.json", docker_config(password)),
        ("home/app/.npmrc", npmrc),
        ("root/.pypirc", pypirc),
    ):
        assert password not in evidence(path, text) and npm_token not in evidence(path, text)


def test_registry_config_without_credentials_does_not_match() -> None:
    assert rules("root/.docker/config.json", '{"auths": {"r.example": {}}}') == []
    assert rules("root/.docker/config.json", '{"credsStore": "pass"}') == []
    assert rules("app/.npmrc", "//r.example/:_authToken=${NPM_TOKEN}\n") == []


def test_generic_high_entropy_only_in_config_files_and_only_random_values() -> None:
    value = random_secret(32)
    text = f"db_password = {value}\n"
    assert rules("etc/app/app.ini", text) == ["secret.generic-high-entropy"]
    assert value not in evidence("etc/app/app.ini", text)
    assert rules("app/main.go", text) == []  # not a config file
    assert rules("etc/app/app.ini", "password = changeme-please-now\n") == []  # no digits
    assert rules("etc/app/app.ini", "password = aaaaaaaaaaaaaaaa1\n") == []  # low entropy
    assert rules("etc/app/app.ini", "token_url = https://example.com/oauth/token1\n") == []


def test_generic_rule_names_may_be_long_but_words_cost_linear_time() -> None:
    value = random_secret(32)
    name = "spring.datasource.hikari.data-source-properties." + "x" * 70 + ".password"
    assert rules("etc/app/app.properties", f"{name} = {value}\n") == ["secret.generic-high-entropy"]
    # Each word took the unbounded pattern hours (quadratic backtracking); CPU time, so a
    # loaded machine does not fail it, with a wide margin over the ~10 ms it takes.
    for word in ("password" * 130_000, base64.b64encode(os.urandom(800_000)).decode()):
        started = time.process_time()
        assert rules("app/seeds.json", f'{{"keyid": "{word}"}}') == []
        assert time.process_time() - started < 5


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("DB_PASSWORD=" + "Zq8" + "x" * 10, True),
        ("GITHUB=" + "ghp_" + "a1" * 18, True),
        ("AWS_SECRET_ACCESS_KEY=" + "k" * 40, True),
        ("DB_PASSWORD_FILE=/run/secrets/db", False),
        ("TOKEN_URL=https://auth.example/token", False),
        ("GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D", False),
        ("PATH=/usr/local/bin:/usr/bin", False),
        ("API_KEY=", False),
        ("PASSWORD=${PASSWORD}", False),
    ],
)
def test_env(variable: str, expected: bool) -> None:
    match = patterns.in_env(variable)
    assert (match is not None) is expected
    if match is not None:
        assert variable.partition("=")[2] not in match.evidence


def test_redacted_keeps_only_a_format_prefix() -> None:
    assert redacted("ghp_" + "x" * 36, "ghp_") == "ghp_… (40 chars)"
    assert redacted("secret-value") == "… (12 chars)"
    assert redacted("abc", "zz") == "… (3 chars)"
