"""Where an image comes from and how that chooses its policy (``config.remotes``,
``config.policy``, ``services.policybook``): pushed here is ``local`` whatever remote serves the
repository, anything else comes from the remote serving its repository; a policy naming the
origin wins; the stored origin follows the settings at start-up (``proxy.origins``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from config.policy import DENY_UNMATCHED, Policy, match_policy
from config.references import parse_image_reference
from config.remotes import LOCAL, Remote, origin_of, remote_for
from config.settings import ConfigError, load_settings
from proxy import origins
from services.policybook import PolicyBook
from storage import verdicts
from storage.db import create_engine, sessionmaker, upgrade
from tests.support.database import Database

HUB = Remote(name="docker-hub", repositories=["*"])
QUAY = Remote(name="quay", repositories=["quay/*", "quay/special/app"])


def policy(name: str, repositories: list[str], origins: list[str] | None = None) -> Policy:
    return Policy(name=name, repositories=repositories, origins=origins or [], require=["x"])


def test_pushed_here_is_local_whatever_serves_the_repository() -> None:
    assert origin_of([HUB], "library/alpine", pushed=True) == LOCAL
    assert origin_of([HUB], "library/alpine", pushed=False) == "docker-hub"
    assert origin_of([], "library/alpine", pushed=False) == LOCAL


def test_the_most_specific_remote_pattern_serves_a_repository() -> None:
    remotes = [HUB, QUAY]
    assert remote_for(remotes, "quay/x") is QUAY  # more specific than HUB's *
    assert remote_for(remotes, "library/alpine") is HUB
    assert remote_for([QUAY], "library/alpine") is None
    first, second = Remote(name="a", repositories=["x/*"]), Remote(name="b", repositories=["x/*"])
    assert remote_for([first, second], "x/y") is first  # a tie goes to the first remote


@pytest.mark.parametrize("name", ["local", "Docker", "-hub", "hub-", "a b", "x" * 64])
def test_bad_remote_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        Remote(name=name)


def test_a_policy_naming_the_origin_wins_over_a_more_specific_pattern() -> None:
    everything = policy("default", ["*"])
    team = policy("team", ["team/*"])
    hub = policy("hub", ["*"], ["docker-hub"])
    pushed = policy("pushed", ["*"], ["local"])
    policies = [everything, team, hub, pushed]
    assert match_policy(policies, "team/app", "docker-hub").name == "hub"
    assert match_policy(policies, "team/app", LOCAL).name == "pushed"
    assert match_policy([everything, team, hub], "team/app", LOCAL).name == "team"
    assert match_policy([everything, team, hub], "x", LOCAL).name == "default"
    assert match_policy(policies, "team/app").name == "pushed"  # the default origin: local


def test_an_origin_no_policy_admits_is_denied() -> None:
    hub_only = [policy("hub", ["*"], ["docker-hub"])]
    assert match_policy(hub_only, "library/alpine", LOCAL) is DENY_UNMATCHED
    assert match_policy(hub_only, "library/alpine", "quay") is DENY_UNMATCHED
    narrow = [policy("hub", ["library/*"], ["docker-hub"])]
    assert match_policy(narrow, "other/app", "docker-hub") is DENY_UNMATCHED


def test_a_policy_without_origins_keeps_the_version_it_had_before_origins() -> None:
    """Upgrading must not make every verdict look decided under another policy version."""
    plain = policy("p", ["*"])
    # (``vex``, added later, is left out of the version the same way when unset.)
    before = json.dumps(plain.model_dump(mode="json", exclude={"origins", "vex"}), sort_keys=True)
    assert plain.version == hashlib.sha256(before.encode()).hexdigest()[:16]
    assert policy("p", ["*"], ["local"]).version != plain.version


def test_the_settings_refuse_an_origin_no_remote_names() -> None:
    policies = json.dumps([{"name": "p", "repositories": ["*"], "origins": ["docker-hub"]}])
    with pytest.raises(ConfigError, match="unknown origin 'docker-hub'"):
        load_settings(env={"GATEKEEPER_POLICIES": policies})
    remotes = json.dumps([{"name": "docker-hub", "url": "https://registry-1.docker.io"}])
    settings = load_settings(env={"GATEKEEPER_POLICIES": policies, "GATEKEEPER_REMOTES": remotes})
    assert [r.name for r in settings.remotes] == ["docker-hub"]
    twice = json.dumps([{"name": "a"}, {"name": "a"}])
    with pytest.raises(ConfigError, match=r"remotes: .*only once"):
        load_settings(env={"GATEKEEPER_REMOTES": twice})


def test_the_remote_password_is_a_secret() -> None:
    remotes = json.dumps([{"name": "hub", "username": "bot", "password": "hunter2-hunter2"}])
    settings = load_settings(env={"GATEKEEPER_REMOTES": remotes})
    assert "hunter2" not in repr(settings) and "hunter2" not in repr(settings.remotes)


@pytest.mark.parametrize(
    ("text", "repository", "reference"),
    [
        ("library/alpine:3.20", "library/alpine", "3.20"),
        ("alpine:latest", "alpine", "latest"),
        ("library/alpine@sha256:" + "a" * 64, "library/alpine", "sha256:" + "a" * 64),
    ],
)
def test_image_references(text: str, repository: str, reference: str) -> None:
    parsed = parse_image_reference(text)
    assert (parsed.repository, parsed.reference) == (repository, reference)
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("library/alpine", "expected REPOSITORY:TAG"),
        ("docker.io/library/alpine:3.20", "reads as a registry host"),
        ("localhost:5000/app:1", "reads as a registry host"),
        ("Library/Alpine:1", "is not a repository name"),
        ("alpine:-x", "is not a tag"),
        ("alpine@sha256:abc", "sha256:<64 hex>"),
    ],
)
def test_bad_image_references_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_image_reference(text)


def test_the_policy_book_matches_per_origin() -> None:
    book = PolicyBook([policy("default", ["*"]), policy("hub", ["*"], ["docker-hub"])])
    assert book.match("library/alpine", "docker-hub").name == "hub"
    assert book.match("library/alpine", LOCAL).name == "default"
    assert book.match("library/alpine").name == "default"


@pytest.fixture
async def db(fresh_db: Database) -> AsyncIterator[Any]:
    engine = create_engine(fresh_db.url)
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
NOW = datetime(2030, 1, 1, tzinfo=UTC)


async def stored(db: Any, repository: str, digest: str) -> verdicts.VerdictView:
    async with db() as session:
        found = await verdicts.get(session, repository, digest)
    assert found is not None
    return found


async def test_a_verdict_is_made_once_and_a_push_marks_it_local(db: Any) -> None:
    async with db() as session, session.begin():
        made = await verdicts.ensure_pending(
            session, "library/alpine", D1, "t", "first pull", origin="docker-hub"
        )
        again = await verdicts.ensure_pending(
            session, "library/alpine", D1, "t", "first pull", origin="docker-hub"
        )
    assert (made, again) == (True, False)
    assert (await stored(db, "library/alpine", D1)).origin == "docker-hub"
    async with db() as session, session.begin():
        pushed = await verdicts.ensure_pending(
            session, "library/alpine", D1, "t", "pushed", origin=LOCAL, pushed=True
        )
    found = await stored(db, "library/alpine", D1)
    assert not pushed and found.pushed and found.origin == LOCAL


async def test_start_up_gives_images_not_pushed_here_their_repositorys_origin(db: Any) -> None:
    async with db() as session, session.begin():
        await verdicts.ensure_pending(session, "library/alpine", D1, "t", "first pull")
        await verdicts.ensure_pending(session, "library/alpine", D2, "t", "r", pushed=True)
        await verdicts.ensure_pending(session, "team/app", D3, "t", "first pull")
    remotes = [Remote(name="docker-hub", repositories=["library/*"])]
    assert await origins.reconcile(db, remotes) == 1
    assert (await stored(db, "library/alpine", D1)).origin == "docker-hub"
    assert (await stored(db, "library/alpine", D2)).origin == LOCAL  # pushed here stays here
    assert (await stored(db, "team/app", D3)).origin == LOCAL
    assert await origins.reconcile(db, remotes) == 0
    assert await origins.reconcile(db, []) == 1  # the remote is gone: back to local
    assert (await stored(db, "library/alpine", D1)).origin == LOCAL


async def test_the_migration_knows_which_earlier_images_were_pushed_here(
    fresh_db: Database,
) -> None:
    """Before origins existed, the verdict's first event recorded why it was made."""
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine, "0015")
        db = sessionmaker(engine)
        async with db() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO verdicts (repository, digest, state, reasons, data_versions, "
                    "outcomes, updated_at) VALUES (:r, :d, 'pending', '[]', '{}', '[]', :t)"
                ),
                [{"r": "a/x", "d": D1, "t": NOW}, {"r": "a/x", "d": D2, "t": NOW}],
            )
            await session.execute(
                text(
                    "INSERT INTO verdict_events (time, repository, digest, event, new_state, "
                    "actor, reason) VALUES (:t, 'a/x', :d, 'pending', 'pending', 'gk', :why)"
                ),
                [{"t": NOW, "d": D1, "why": "pushed"}, {"t": NOW, "d": D2, "why": "first pull"}],
            )
        await upgrade(engine)
        assert (await stored(db, "a/x", D1)).pushed
        assert not (await stored(db, "a/x", D2)).pushed
        assert (await stored(db, "a/x", D2)).origin == LOCAL
    finally:
        await engine.dispose()
