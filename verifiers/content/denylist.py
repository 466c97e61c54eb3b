"""The malware verifier's inputs, loaded once at start-up: a SHA-256 denylist file and an
optional YARA rules file.

Both fail closed: a denylist line that is not a SHA-256 digest, or YARA rules configured on a
machine without ``yara-python``, stop the gatekeeper at start-up with the file and line named,
rather than scanning with less than was asked for.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DIGEST = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class Denylist:
    """Digests (lowercase hex) of files that must not be in an image."""

    digests: frozenset[str]
    content_hash: str
    """Hash of the normalised list, part of the scanner version: a new list re-scans."""

    @classmethod
    def load(cls, path: Path) -> Denylist:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"denylist: cannot read {path}: {exc}") from exc
        digests: set[str] = set()
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            found = _DIGEST.fullmatch(entry.split()[0])
            if found is None:
                raise ValueError(f"denylist: {path}:{number}: not a SHA-256 hex digest")
            digests.add(found.group(1).lower())
        canonical = "\n".join(sorted(digests)).encode()
        return cls(frozenset(digests), hashlib.sha256(canonical).hexdigest()[:16])


@dataclass(frozen=True)
class YaraRules:
    """Compiled YARA rules (``yara.Rules``, thread-safe for matching) and their source hash."""

    rules: Any
    content_hash: str

    @classmethod
    def load(cls, path: Path) -> YaraRules:
        try:
            import yara  # optional: pip install 'registry-gatekeeper[yara]'
        except ImportError as exc:
            raise ValueError(
                "yara_rules is set but yara-python is not installed "
                "(pip install 'registry-gatekeeper[yara]', or remove yara_rules)"
            ) from exc
        try:
            source = path.read_bytes()
            rules = yara.compile(source=source.decode("utf-8"))
        except (OSError, UnicodeDecodeError, yara.Error) as exc:
            raise ValueError(f"yara_rules: cannot compile {path}: {exc}") from exc
        version = getattr(yara, "__version__", "")
        content_hash = hashlib.sha256(source + version.encode()).hexdigest()[:16]
        return cls(rules, content_hash)

    def match(self, data: bytes, timeout: int) -> list[str]:
        """Names of the rules that match ``data``."""
        return [str(m.rule) for m in self.rules.match(data=data, timeout=timeout)]
