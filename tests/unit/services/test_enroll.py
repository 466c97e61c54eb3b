"""``gatekeeper enroll`` skips a repository whose name is not a valid OCI name, and counts it,
before it asks the registry or the verification service anything about it."""

from __future__ import annotations

from typing import Any, cast

from services.enroll import enroll
from services.verification import VerificationService
from upstream.client import Upstream


class Untouchable:
    """Stands for the upstream and the verification service: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"enroll used {name} for a name it should have skipped")


async def test_an_invalid_name_is_skipped_untouched() -> None:
    for bad in ("Upper/case", "a//b", "-lead", "x" * 256):
        report = await enroll(
            cast(Upstream, Untouchable()), cast(VerificationService, Untouchable()), bad
        )
        assert (report.skipped, report.repositories, report.images) == (1, 0, 0), bad
