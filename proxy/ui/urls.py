"""The console's URLs in one place, so templates and redirects agree. Repository names and
digests are checked against the registry's grammar before they reach here (lower-case letters,
digits, ``._-/`` and ``sha256:<hex>``), so they need no escaping in a path."""

from __future__ import annotations

from urllib.parse import urlencode

PREFIX = "/ui"
POLICIES = f"{PREFIX}/policies"
VEX = f"{PREFIX}/vex"


def image(repository: str, digest: str) -> str:
    return f"{PREFIX}/images/{repository}@{digest}"


def sbom(repository: str, digest: str) -> str:
    return f"{PREFIX}/sbom/{repository}@{digest}"


def action(verb: str, repository: str, digest: str) -> str:
    """Where an action's form posts: ``release``, ``requarantine`` or ``rescan``."""
    return f"{PREFIX}/{verb}/{repository}@{digest}"


def waive(repository: str, digest: str, finding: str | None = None) -> str:
    query = f"?{urlencode({'finding': finding})}" if finding else ""
    return f"{PREFIX}/waive/{repository}@{digest}{query}"


def with_query(path: str, params: dict[str, str]) -> str:
    kept = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(kept)}" if kept else path
