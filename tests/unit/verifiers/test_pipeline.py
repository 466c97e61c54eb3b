"""The pipeline: concurrency, timeouts and crashes become outcomes; config sanity."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from tests.fakes.layers import MemoryCache
from verifiers.base import Finding, Image, Severity, Skipped, Verifier, Versioned
from verifiers.config_sanity import ConfigSanity
from verifiers.layers import PerLayer
from verifiers.pipeline import applies, expected_verifiers, required_here, run_pipeline


class NoBlobs:
    @asynccontextmanager
    async def open(self, digest: str) -> Any:
        async def chunks() -> Any:
            yield b"data"

        yield chunks()


def image(config: dict[str, Any] | None, layers: int = 1, children: int = 0) -> Image:
    from verifiers.base import Descriptor

    return Image(
        repository="r",
        digest="sha256:" + "0" * 64,
        media_type="m",
        manifest={},
        config=config,
        layers=tuple(Descriptor("l", f"sha256:{n:064x}", 1) for n in range(layers)),
        children=tuple(Descriptor("m", f"sha256:{n:064x}", 1) for n in range(children)),
        blobs=NoBlobs(),
    )


class Sleeper:
    version = "1"

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        await asyncio.sleep(self.seconds)
        return [Finding(self.name, "R", Severity.LOW, "t")]


class Crasher:
    name, version = "crasher", "1"

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        raise ValueError("nope")


async def test_verifiers_run_concurrently_with_their_own_timeouts() -> None:
    started = time.perf_counter()
    outcomes = await run_pipeline(
        image({}),
        [Sleeper("a", 0.3), Sleeper("b", 0.3), Sleeper("slow", 10), Crasher()],
        {"slow": 0.2},
        5.0,
        required={"a", "b", "slow", "crasher"},
    )
    assert time.perf_counter() - started < 1.0
    statuses = {o.verifier: (o.status, o.detail) for o in outcomes}
    assert statuses["a"][0] == statuses["b"][0] == "ok"
    assert statuses["slow"] == ("error", "timed out after 0.2s")
    assert statuses["crasher"] == ("error", "crashed: ValueError: nope")


async def test_config_sanity() -> None:
    sanity = ConfigSanity()
    good = {"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": ["x"]}}
    assert await sanity.verify(image(good)) == []
    bad = await sanity.verify(image({"os": "linux", "rootfs": {"diff_ids": []}}))
    assert isinstance(bad, list)
    assert {f.rule_id for f in bad} == {
        "config.missing-architecture",
        "config.layer-count-mismatch",
    }
    assert isinstance(await sanity.verify(image(None)), Skipped)
    assert isinstance(await sanity.verify(image(None, children=2)), Skipped)


class LayerCounter:
    name, version = "layers", "1"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def verify_layer(self, layer: Any, blobs: Any) -> list[Finding] | Skipped:
        self.calls.append(layer.digest)
        return [Finding(self.name, "L", Severity.HIGH, "layer finding", layer.digest)]


async def test_per_layer_results_are_cached_and_replayed() -> None:
    inner, cache = LayerCounter(), MemoryCache()
    adapter = PerLayer(inner, cache)
    first = await adapter.verify(image({}, layers=2))
    second = await adapter.verify(image({}, layers=3))
    assert len(inner.calls) == 3  # two, then only the new third layer
    assert isinstance(first, list) and isinstance(second, list)
    assert [f.location for f in second] == [f"sha256:{n:064x}" for n in range(3)]
    assert second[0] == first[0]


async def test_a_versioned_result_records_its_own_version() -> None:
    """A verifier whose version depends on data it read returns it with the findings: one
    instance serves concurrent verifications, so its attribute may already say another."""

    class DataDependent:
        name = "data"
        version = "1.data"

        async def verify(self, image: Image) -> Versioned:
            return Versioned([], "1.data-42")

    (outcome,) = await run_pipeline(
        image({}), [DataDependent()], {}, 5.0, required={DataDependent.name}
    )
    assert (outcome.status, outcome.version) == ("ok", "1.data-42")


class Unreadable:
    """A verifier whose image could not be read (the registry or its store failed)."""

    version = "1"
    name = "reader"

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        from verifiers.base import SourceUnavailable

        raise SourceUnavailable("blob x: object storage answered 503")


class Broken:
    version = "1"
    name = "broken"

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        from verifiers.base import VerifierError

        raise VerifierError("blob x: upstream answered 404")


async def test_an_unreadable_image_is_an_unavailable_error_not_a_crash() -> None:
    unread, broken = await run_pipeline(
        image({}), [Unreadable(), Broken()], {}, 5, required={"reader", "broken"}
    )
    assert unread.status == "error" and unread.unavailable
    assert unread.detail == "could not read the image: blob x: object storage answered 503"
    assert broken.status == "error" and not broken.unavailable  # a crash is decided on


class IndexChecker:
    name, version = "index-checker", "1"
    checks_indexes = True

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        return []


async def test_only_required_verifiers_run_and_unrequired_leave_no_outcome() -> None:
    """An enabled verifier the policy does not require does not run: no outcome at all (not
    a "skipped" one), so it adds no findings and costs nothing. A required one always runs."""
    ran: list[str] = []

    class Recording:
        version = "1"

        def __init__(self, name: str) -> None:
            self.name = name

        async def verify(self, image: Image) -> list[Finding] | Skipped:
            ran.append(self.name)
            return [Finding(self.name, "R", Severity.HIGH, "t")]

    outcomes = await run_pipeline(
        image({}), [Recording("wanted"), Recording("plugin")], {}, 5.0, required={"wanted"}
    )
    assert [o.verifier for o in outcomes] == ["wanted"] and ran == ["wanted"]
    assert await run_pipeline(image({}), [Recording("plugin")], {}, 5.0, required=set()) == []
    # What a required verifier needs beside it runs too (vulnerabilities -> inventory).
    needy = Recording("vulnerabilities")
    needy.needs = ("inventory",)  # type: ignore[attr-defined]
    ran.clear()
    both = await run_pipeline(
        image({}),
        [Recording("inventory"), needy, Recording("plugin")],
        {},
        5.0,
        required={"vulnerabilities"},
    )
    assert [o.verifier for o in both] == ["inventory", "vulnerabilities"]
    assert sorted(ran) == ["inventory", "vulnerabilities"]


def test_applies_to_an_index_only_what_checks_indexes_and_is_required() -> None:
    index = replace(image(None, layers=0, children=2), is_index=True)
    required = {"index-checker", "config-sanity"}
    assert applies(IndexChecker(), index, required)
    assert not applies(ConfigSanity(), index, required)  # a platform image's own check
    assert applies(ConfigSanity(), image({}), required)
    assert not applies(IndexChecker(), index, {"config-sanity"})  # not required here


def test_what_is_expected_to_have_run_is_read_back_the_same_way() -> None:
    """The live verification records which verifiers applied; a re-decision from stored
    outcomes and the policy's "required verifier did not run" both read it through
    ``required_here``, so neither can disagree with the verification about an index."""
    index = replace(image(None, layers=0, children=2), is_index=True)
    installed: list[Verifier] = [IndexChecker(), ConfigSanity()]
    require = ["config-sanity", "index-checker", "not-installed"]
    on_index = expected_verifiers(index, installed, require)
    assert on_index == frozenset({"index-checker"})
    assert required_here(require, on_index) == ["index-checker"]
    # An image expects every required verifier, also one that is not installed: it did not
    # run, and the policy must say so rather than leave it out.
    assert expected_verifiers(image({}), installed, require) is None
    assert required_here(require, None) == require
    assert required_here(require, frozenset()) == []  # an artifact let through unverified
