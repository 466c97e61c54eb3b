"""How long the pull gate holds a pull of a pending image (``proxy.gate.hold_seconds``): the
policy's hold, a remote's hold for every pull of an image from it (replacing the first-pull
hold, which is for images pushed around the gatekeeper), the first-pull hold otherwise."""

from __future__ import annotations

import json
from typing import Any, cast

from config.policy import Policy
from config.settings import load_settings
from proxy.gate import hold_seconds
from proxy.state import Services

REMOTES = [{"name": "hub", "hold_seconds": 300}, {"name": "quick", "hold_seconds": 2}]


class FakeVerification:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def remote(self, origin: str) -> Any:
        return next((r for r in self.settings.remotes if r.name == origin), None)


class FakeServices:
    def __init__(self) -> None:
        self.settings = load_settings(
            env={
                "GATEKEEPER_REMOTES": json.dumps(REMOTES),
                "GATEKEEPER_VERIFICATION__FIRST_PULL_HOLD_SECONDS": "30",
            }
        )
        self.verification = FakeVerification(self.settings)


def policy(**kw: Any) -> Policy:
    return Policy.model_validate({"name": "p", "repositories": ["*"], "require": ["x"], **kw})


def held(pol: Policy, origin: str, *, first_pull: bool) -> float:
    return hold_seconds(cast(Services, FakeServices()), pol, origin, first_pull=first_pull)


def test_images_from_a_remote_wait_its_hold_on_every_pull() -> None:
    blocking = policy(pending="block")
    assert held(blocking, "hub", first_pull=True) == 300
    assert held(blocking, "hub", first_pull=False) == 300  # a second puller waits as long
    assert held(blocking, "quick", first_pull=True) == 2  # the first-pull hold does not apply
    assert held(policy(hold_seconds=60), "quick", first_pull=False) == 60  # the policy's, longer


def test_other_images_keep_the_policy_and_first_pull_holds() -> None:
    assert held(policy(hold_seconds=10), "local", first_pull=True) == 30
    assert held(policy(hold_seconds=10), "local", first_pull=False) == 10
    assert held(policy(pending="block"), "local", first_pull=False) == 0
    assert held(policy(pending="block"), "gone", first_pull=True) == 30  # a remote removed since
