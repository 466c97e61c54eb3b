"""What a secret looks like: the patterns of the ``secrets`` verifier, as pure functions of a
file's path and text (unit-testable without layers).

Specific formats first (a key whose format says what it is); the generic rule only looks at
assignments to secret-like names in config files, and only at values that look random, since
``password = changeme`` in a sample config is noise, while 30 random characters are not.
Every match is returned with redacted evidence (``redact``); the value itself leaves no
function of this module. Binaries and files too large to hold are searched with the same
patterns by ``secret_windows``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from verifiers.content.redact import redacted


@dataclass(frozen=True)
class Match:
    """A secret found in a text: which rule, and evidence without the secret."""

    rule_id: str
    evidence: str
    end: int = 0
    """Offset in the searched text just past the match (past the whole text for the rules that
    read a JSON document): a search in overlapping windows reports each match once, from the
    window that saw the most after it."""


ANCHORS = re.compile(
    rb"PRIVATE KEY|AKIA|ASIA|aws_secret|AWS_SECRET|service_account|gh[pousr]_|github_pat_"
    rb"|gl(?:pat|dt|rt|ptt|ft|cbt)-|xox[abposr]-|hooks\.slack\.com"
)
"""Cheap first pass over raw bytes: a file without any of these cannot match a specific rule,
so the (slower) specific patterns run only on the few files that have one. Every specific match
but the service account's JSON holds its anchor, at most :data:`REACH_BEFORE` characters from
its start; :data:`REACH_AFTER` characters after the anchor hold the rest of it."""
REACH_BEFORE = 64
"""Room before an anchor: ``-----BEGIN ENCRYPTED `` before ``PRIVATE KEY``, ``https://``
before ``hooks.slack.com``, and the character a look-behind checks."""
REACH_AFTER = 1024
"""Room after an anchor: a 255-character token, or a PEM header and the 600 characters of its
body that :func:`_pem` checks."""

_PEM = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----")
_PEM_HEADER_LINE = re.compile(r"^[A-Za-z-]+:[^\n]*$", re.MULTILINE)
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])((?:AKIA|ASIA)[A-Z0-9]{16})(?![A-Z0-9])")
_AWS_SECRET = re.compile(
    r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
)
_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("secret.github-token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,255})\b")),
    ("secret.github-token", re.compile(r"\b(github_pat_[A-Za-z0-9_]{60,255})\b")),
    ("secret.gitlab-token", re.compile(r"\b(gl(?:pat|dt|rt|ptt|ft|cbt)-[A-Za-z0-9_\-]{20,})")),
    ("secret.slack-token", re.compile(r"\b(xox[abposr]-[A-Za-z0-9-]{10,})")),
    (
        "secret.slack-token",
        re.compile(r"(https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{20,})"),
    ),
)
_SLACK_HOOK = "https://hooks.slack.com/services/"

CONFIG_SUFFIXES = (
    ".env", ".ini", ".cfg", ".conf", ".config", ".properties", ".yaml", ".yml", ".toml",
    ".json", ".xml", ".netrc", ".credentials",
)  # fmt: skip
"""Files the generic rule reads; anywhere else a ``token = ...`` is too often code."""
_DOCKER_CONFIGS = (".docker/config.json", "containers/auth.json")
_AUTH_FIELDS = ("auth", "identitytoken", "password", "registrytoken")
_AUTH_FIELD = re.compile(r'"(auth|identitytoken|password|registrytoken)"\s*:\s*"([^"\\]+)"')
"""A credential field of a client config as written, for one that does not parse as JSON."""

_NAME = "[A-Za-z0-9_.-]"
_ASSIGNMENT = re.compile(
    rf"(?i)(?<!{_NAME})({_NAME}{{0,128}}(?:password|passwd|secret|token|api[_-]?key"
    rf"|access[_-]?key|private[_-]?key|client[_-]?secret|credential){_NAME}{{0,128}})"
    r"[\"']?\s*[:=]\s*[\"']?([^\s\"'<>${}]{16,200})"
)
"""A secret-like name assigned a value. The name starts where a word starts and has at most 128
characters either side of its keyword: unbounded, the search backtracked quadratically over
every long word (7 s for npm's 19 KB ``@sigstore/tuf/seeds.json``, hours for a megabyte of
``passwordpassword...``), inside one regex call that no read deadline interrupts."""
_SECRET_NAME = re.compile(
    r"(?i)(password|passwd|secret|token|api_?key|access_?key|private_?key|credentials?)"
)
_REFERENCE_NAME = re.compile(r"(?i)_(file|path|dir|url|uri|host|user(name)?|name|id)$")


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _format_prefix(token: str) -> str:
    """The part of ``token`` that names its format (``ghp_``, ``glpat-``, ``xoxb-``), never
    a character of the secret after it."""
    if token.startswith(_SLACK_HOOK):
        return _SLACK_HOOK
    cuts = [i for i in (token.find("_"), token.find("-")) if 0 <= i < 12]
    return token[: min(cuts) + 1] if cuts else ""


def _pem(text: str) -> Iterator[Match]:
    for found in _PEM.finditer(text):
        body = text[found.end() : found.end() + 600].replace("\\n", "\n")
        body = _PEM_HEADER_LINE.sub("", body)  # Proc-Type/DEK-Info of encrypted PEM
        compact = "".join(body.split())
        # a key has a base64 body; a library's "-----BEGIN ... PRIVATE KEY-----" constant not
        if re.match(r"[A-Za-z0-9+/=]{64}", compact):
            yield Match("secret.private-key", f"{found.group(1)} block", found.end())


def _gcp(path: str, text: str) -> Iterator[Match]:
    if '"service_account"' not in text or '"private_key"' not in text:
        return
    try:
        document = json.loads(text)
    except ValueError:
        return
    if isinstance(document, dict) and document.get("type") == "service_account":
        key = document.get("private_key")
        if isinstance(key, str) and "PRIVATE KEY" in key:
            project = document.get("project_id")
            where = f" of project {project}" if isinstance(project, str) else ""
            yield Match("secret.gcp-service-account", f"service-account key{where}", len(text))


def _aws(text: str) -> Iterator[Match]:
    for found in _AWS_KEY_ID.finditer(text):
        key_id = found.group(1)
        if not key_id.endswith("EXAMPLE"):  # AWS's documentation key
            evidence = f"key id {redacted(key_id, key_id[:4])}"
            yield Match("secret.aws-access-key", evidence, found.end())
    for found in _AWS_SECRET.finditer(text):
        if "EXAMPLE" not in found.group(1):
            evidence = f"secret access key {redacted(found.group(1))}"
            yield Match("secret.aws-access-key", evidence, found.end())


def _tokens(text: str) -> Iterator[Match]:
    for rule_id, pattern in _TOKENS:
        for found in pattern.finditer(text):
            token = found.group(1)
            yield Match(rule_id, redacted(token, _format_prefix(token)), found.end())


def keys_and_tokens(text: str, *, pem: bool = True) -> list[Match]:
    """Matches of the rules whose match holds an anchor: private keys (unless ``pem`` is
    False), AWS keys, and the GitHub, GitLab and Slack tokens."""
    return [*(_pem(text) if pem else ()), *_aws(text), *_tokens(text)]


def specific(path: str, text: str) -> list[Match]:
    """Matches of the format-specific rules (keys and tokens) in ``text``."""
    found = list(_gcp(path, text))
    # the service account's key is reported once, as that
    return found + keys_and_tokens(text, pem=not found)


def is_config(path: str) -> bool:
    """Whether the generic rule reads the file at ``path`` (:data:`CONFIG_SUFFIXES`)."""
    base = path.rpartition("/")[2].lower()
    return base.endswith(CONFIG_SUFFIXES) or base.startswith(".env") or base == "credentials"


def is_client_config(path: str) -> bool:
    """Whether :func:`registry_credentials` reads the file at ``path``."""
    return path.endswith(_DOCKER_CONFIGS) or path.rpartition("/")[2] in (".npmrc", ".pypirc")


def generic(path: str, text: str, min_entropy: float) -> list[Match]:
    """High-entropy values assigned to secret-like names, in config files only."""
    if not is_config(path):
        return []
    matches: list[Match] = []
    for found in _ASSIGNMENT.finditer(text):
        name, value = found.group(1), found.group(2)
        if "://" in value or value.startswith("/") or entropy(value) < min_entropy:
            continue
        if not (re.search(r"[A-Za-z]", value) and re.search(r"[0-9]", value)):
            continue  # words and version strings, not keys
        evidence = f"{name} = {redacted(value)}"
        matches.append(Match("secret.generic-high-entropy", evidence, found.end()))
    return matches


def registry_credentials(path: str, text: str) -> list[Match]:
    """Credentials in the well-known client config files (docker, npm, PyPI)."""
    base = path.rpartition("/")[2]
    if path.endswith(_DOCKER_CONFIGS):
        return _docker_auths(text)
    if base == ".npmrc":
        return [
            Match(
                "secret.registry-credentials",
                f".npmrc {m.group(1)} {redacted(m.group(2))}",
                m.end(),
            )
            for m in re.finditer(r"(?m)(_authToken|_auth|_password)\s*=\s*(\S+)", text)
            if not m.group(2).startswith("${")
        ]
    if base == ".pypirc":
        return [
            Match(
                "secret.registry-credentials", f".pypirc password {redacted(m.group(1))}", m.end()
            )
            for m in re.finditer(r"(?m)^\s*password\s*[:=]\s*(\S.*?)\s*$", text)
            if not m.group(1).startswith("${")
        ]
    return []


def _docker_auths(text: str) -> list[Match]:
    try:
        document = json.loads(text)
    except ValueError:  # a NUL before it, a window of a large file: the fields as written
        return [
            Match("secret.registry-credentials", f"{m.group(1)} {redacted(m.group(2))}", m.end())
            for m in _AUTH_FIELD.finditer(text)
        ]
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return []
    return [
        Match(
            "secret.registry-credentials",
            f"{host}: {field} {redacted(entry[field])}",
            len(text),
        )
        for host, entry in auths.items()
        if isinstance(entry, dict)
        for field in _AUTH_FIELDS
        if isinstance(entry.get(field), str) and entry[field]
    ]


def find(path: str, text: str, min_entropy: float, anchored: bool = True) -> list[Match]:
    """Every secret in one file. ``anchored`` False (no :data:`ANCHORS` in the raw bytes)
    skips the specific rules, which then cannot match. The generic rule runs only on a file
    no other rule flagged: a service-account JSON's ``private_key_id`` is part of the key
    already reported, not a second secret."""
    found = registry_credentials(path, text)
    if anchored:
        found += specific(path, text)
    return found or generic(path, text, min_entropy)


def in_env(variable: str) -> Match | None:
    """A secret in one ``NAME=value`` of the image config's ``Env``, or None.

    A value in a known token format counts whatever its name; a value of a secret-like name
    (``DB_PASSWORD``) counts unless it is a reference (``*_FILE``, ``*_URL``) or a placeholder.
    """
    name, sep, value = variable.partition("=")
    if not sep or not value:
        return None
    kinds = {m.rule_id for m in specific(name, value)}
    if kinds:
        rules = ", ".join(sorted(k.removeprefix("secret.") for k in kinds))
        return Match("secret.env", f"{name}={redacted(value)} ({rules})")
    secret_name = _SECRET_NAME.search(name) and not _REFERENCE_NAME.search(name)
    if secret_name and len(value) >= 8 and not value.startswith(("${", "<", "/")):
        return Match("secret.env", f"{name}={redacted(value)}")
    return None
