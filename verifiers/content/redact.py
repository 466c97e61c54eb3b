"""Evidence without the secret: what a finding may say about a value it found.

A finding is stored in the database, shown by the admin API, sent in webhooks and written to
logs, so the secret itself must never be in it. Evidence keeps only what helps a person find and
judge the value: a prefix that is part of the *format* (``AKIA``, ``ghp_``, never characters
of the secret part), the value's length, and where it was.
"""

from __future__ import annotations


def redacted(value: str, keep: str = "") -> str:
    """``keep`` (a public format prefix of ``value``, or nothing), an ellipsis and the length:
    ``redacted("ghp_abc…", "ghp_")`` is ``"ghp_… (40 chars)"``."""
    prefix = keep if keep and value.startswith(keep) else ""
    return f"{prefix}… ({len(value)} chars)"
