"""The verdict lifecycle: the states an image can be in, which of them may leave the registry,
and how a verification's decision, an admin's release and an admin's hold combine into the one
state the gate reads.

One module owns these rules so that storage (which only applies them), the gate, re-evaluation
and the admin API cannot drift apart. The precedence is **hold > release > verdict**:

- an admin's hold (``requarantine``, or a hold inherited through held content) keeps an image
  quarantined whatever a verification decides; only a release lifts it;
- an unexpired admin release survives a failing decision (the admin's call, until it expires);
  a passing decision replaces it, since nothing is left to override;
- otherwise the latest decision stands. A decision that cannot be made yet (``pending``: an
  index whose children are still being verified) never takes a settled state away.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime


class State(enum.StrEnum):
    """An image's verdict state, as stored (``verdicts.state``) and shown."""

    PENDING = "pending"
    """Not decided yet: being verified, or waiting for what it depends on."""
    PASSED = "passed"
    QUARANTINED = "quarantined"
    RELEASED = "released"
    """Quarantined by the checks, let out by an admin (with a reason, perhaps an expiry)."""


PULLABLE: frozenset[State] = frozenset({State.PASSED, State.RELEASED})
"""The states the gate lets leave the registry."""

SETTLED: frozenset[State] = frozenset({State.PASSED, State.QUARANTINED, State.RELEASED})


def parse(value: str) -> State:
    """A stored or requested state; ValueError names the valid ones."""
    try:
        return State(value)
    except ValueError as exc:
        names = ", ".join(s.value for s in State)
        raise ValueError(f"unknown state {value!r}; expected one of {names}") from exc


def release_active(state: str, expires: datetime | None, moment: datetime | None = None) -> bool:
    """A release counts until its expiry (none: until withdrawn)."""
    return state == State.RELEASED and (expires is None or expires > (moment or _now()))


def effective(state: str, expires: datetime | None, moment: datetime | None = None) -> State:
    """The state at ``moment``: a release past its expiry counts as quarantined even before the
    sweeper rewrites it."""
    if state == State.RELEASED and not release_active(state, expires, moment):
        return State.QUARANTINED
    return parse(state)


def pullable(state: str, expires: datetime | None = None, moment: datetime | None = None) -> bool:
    return effective(state, expires, moment) in PULLABLE


def settle(current: str | None, decided: State, *, held: bool, released: bool) -> State:
    """The state a new decision leaves, given the current one and the admin overrides on it
    (``released``: an unexpired release is in force)."""
    if held:
        return State.QUARANTINED
    if released and decided != State.PASSED:
        return State.RELEASED
    if decided == State.PENDING and current is not None and current != State.PENDING:
        return parse(current)
    return decided


def event_name(new: State) -> str:
    """The verdict event a change to ``new`` is recorded and published as."""
    return {State.PASSED: "passed", State.QUARANTINED: "quarantined"}.get(new, "verified")


def hold_reason(actor: str) -> str:
    """The first reason of an image an admin holds."""
    return f"held in quarantine by {actor} until an admin releases it"


def inherited_hold_reason(holder: str, actor: str, why: str) -> str:
    """The reason of an image that holds content of an image an admin holds: the same words, so
    a re-wrapped image tells the pusher exactly what the original would."""
    return f"{hold_reason(actor)} (it holds content of {holder}, held: {why})"


def _now() -> datetime:
    return datetime.now(UTC)
