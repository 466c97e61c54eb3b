"""What a pull of an image never seen costs the database before it waits (``proxy.gate``): one
write transaction that marks it pending and queues its verification already ahead of the
queue, then the wait, which reads the verdict first thing. No read of the verdict between the
two, and no second write transaction to expedite a job just queued. Under a policy of light
verifiers (``services.inline``) the pull that made the verdict verifies it in place instead,
and only an image never seen, for a pull that waits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from config.policy import Policy
from config.settings import load_settings
from proxy.gate import _current_verdict
from proxy.state import Services
from services.inline import HeldManifest
from verifiers.lifecycle import State

NAME, DIGEST = "team/app", "sha256:" + "a" * 64


@dataclass
class Pending:
    state: State = State.PENDING


@dataclass
class RecordingVerification:
    queued: bool = True
    """What ``submit`` answers: False when another pull or a push queued it first."""
    inline: bool = False
    """What ``runs_inline`` answers (``services.inline``)."""
    inline_verdict: Any = None
    """What ``verify_inline`` answers: None when another pull made the verdict first."""
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def runs_inline(self, policy: Policy) -> bool:
        return self.inline

    async def verify_inline(
        self, repository: str, digest: str, reason: str, held: Any, timeout: float
    ) -> Any:
        self.calls.append(("inline", (held, timeout)))
        return self.inline_verdict

    async def submit(self, repository: str, digest: str, reason: str, **kw: Any) -> bool:
        self.calls.append(("submit", kw.get("waited_for")))
        return self.queued

    async def verdict(self, repository: str, digest: str) -> Any:
        self.calls.append(("verdict", None))
        return Pending()

    async def expedite(self, repository: str, digest: str) -> None:
        self.calls.append(("expedite", None))

    async def wait_for_verdict(self, repository: str, digest: str, timeout: float) -> Any:
        self.calls.append(("wait", timeout))
        return Pending(State.PASSED)

    def remote(self, origin: str) -> None:
        return None


class FakeServices:
    def __init__(self, verification: RecordingVerification) -> None:
        env = {"GATEKEEPER_VERIFICATION__FIRST_PULL_HOLD_SECONDS": "30"}
        self.settings = load_settings(env=env)
        self.verification = verification


def policy(**kw: Any) -> Policy:
    return Policy.model_validate({"name": "p", "repositories": ["*"], "require": ["x"], **kw})


async def decide(verification: RecordingVerification, pol: Policy, verdict: Any = None) -> Any:
    svc = cast(Services, FakeServices(verification))
    return await _current_verdict(svc, pol, "local", NAME, DIGEST, verdict)


async def test_a_first_pull_queues_expedited_and_waits() -> None:
    verification = RecordingVerification()
    found = await decide(verification, policy(hold_seconds=10))
    assert found.state == State.PASSED
    assert verification.calls == [("submit", True), ("wait", 30)]


async def test_a_first_pull_that_lost_the_race_expedites_what_was_queued() -> None:
    """A push queued the job (not ahead of the queue): the pull that waits for it moves it."""
    verification = RecordingVerification(queued=False)
    await decide(verification, policy(hold_seconds=10))
    assert verification.calls == [("submit", True), ("expedite", None), ("wait", 30)]


async def test_a_pending_image_seen_before_is_expedited_and_waited_for() -> None:
    verification = RecordingVerification()
    await decide(verification, policy(hold_seconds=10), Pending())
    assert verification.calls == [("expedite", None), ("wait", 10)]


async def test_warn_mode_queues_without_waiting_and_answers_the_pending_verdict() -> None:
    verification = RecordingVerification()
    found = await decide(verification, policy(mode="warn"))
    assert found.state == State.PENDING
    assert verification.calls == [("submit", False), ("verdict", None)]


async def test_a_decided_image_is_not_queued() -> None:
    verification = RecordingVerification()
    assert (await decide(verification, policy(), Pending(State.PASSED))).state == State.PASSED
    assert verification.calls == []


async def test_a_first_pull_under_a_light_policy_is_verified_inline_with_the_manifest_held() -> (
    None
):
    verification = RecordingVerification(inline=True, inline_verdict=Pending(State.QUARANTINED))
    held = HeldManifest(b"{}", None)
    svc = cast(Services, FakeServices(verification))
    found = await _current_verdict(svc, policy(hold_seconds=10), "local", NAME, DIGEST, None, held)
    assert found is not None and found.state == State.QUARANTINED
    assert verification.calls == [("inline", (held, 30))], "no job queued for the workers"


async def test_a_first_pull_that_lost_the_inline_race_waits_for_the_winner() -> None:
    """Another process made the verdict first: this pull waits for it, queues nothing."""
    verification = RecordingVerification(inline=True, inline_verdict=None)
    found = await decide(verification, policy(hold_seconds=10))
    assert found.state == State.PASSED
    assert verification.calls == [("inline", (None, 30)), ("expedite", None), ("wait", 30)]


async def test_a_heavy_policy_goes_to_the_workers() -> None:
    verification = RecordingVerification(inline=False)
    await decide(verification, policy(hold_seconds=10))
    assert verification.calls == [("submit", True), ("wait", 30)]


async def test_no_inline_verification_for_a_pull_that_does_not_wait() -> None:
    """Warn mode (no hold): queued for the workers, answered at once."""
    verification = RecordingVerification(inline=True)
    await decide(verification, policy(mode="warn"))
    assert verification.calls == [("submit", False), ("verdict", None)]


async def test_an_image_seen_before_is_never_verified_inline() -> None:
    verification = RecordingVerification(inline=True)
    await decide(verification, policy(hold_seconds=10), Pending())
    assert verification.calls == [("expedite", None), ("wait", 10)]
