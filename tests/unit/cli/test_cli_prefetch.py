"""``gatekeeper prefetch`` against httpx's MockTransport: what it asks of the admin API, the
progress it prints (fetched, decided, still being verified), and its exit status."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cli.admin import run_command
from cli.main import build_parser

GOOD, BAD = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def fetched(reference: str, digest: str | None, error: str | None = None) -> dict[str, Any]:
    return {
        "reference": reference,
        "repository": reference.partition(":")[0],
        "digest": digest,
        "origin": "docker-hub" if digest else None,
        "queued": digest is not None,
        "state": "pending" if digest else None,
        "error": error,
    }


class FakeAdmin:
    """Answers POST /prefetch, then each image is pending for ``polls`` GETs."""

    def __init__(self, images: list[dict[str, Any]], final: dict[str, str], polls: int) -> None:
        self.images, self.final, self.polls = images, final, polls
        self.bodies: list[Any] = []
        self.gets: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.bodies.append(json.loads(request.content))
            return httpx.Response(202, json={"images": self.images})
        digest = request.url.path.rsplit("@", 1)[1]
        seen = self.gets[digest] = self.gets.get(digest, 0) + 1
        state = self.final[digest] if seen > self.polls else "pending"
        reasons = ["1 critical (secret.aws-access-key)"] if state == "quarantined" else []
        return httpx.Response(200, json={"effective_state": state, "reasons": reasons})


def run(argv: list[str], handler: Callable[[httpx.Request], httpx.Response]) -> int:
    args = build_parser().parse_args(["prefetch", "--poll", "0", "--every", "0", *argv])
    transport = httpx.MockTransport(handler)
    return run_command(args.admin_command, args, {"GATEKEEPER_ADMIN_TOKEN": "t"}, transport)


def test_progress_until_every_image_is_decided(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin(
        [fetched("library/alpine:3.20", GOOD), fetched("library/evil:1", BAD)],
        {GOOD: "passed", BAD: "quarantined"},
        polls=2,
    )
    status = run(["library/alpine:3.20", "library/evil:1", "--again"], admin)
    out, err = capsys.readouterr()
    assert status == 1 and "not every image may be pulled: library/evil:1" in err
    assert admin.bodies == [{"images": ["library/alpine:3.20", "library/evil:1"], "again": True}]
    lines = out.splitlines()
    assert lines[0] == f"fetched library/alpine:3.20 ({GOOD[:19]}, from docker-hub): verifying"
    assert any(line.startswith("... 2 images still being verified") for line in lines)
    assert any(line.startswith("library/alpine:3.20: passed after") for line in lines)
    assert any(
        line.startswith("library/evil:1: quarantined after") and "secret.aws-access-key" in line
        for line in lines
    )
    assert lines[-1] == "2 images: 1 passed, 1 quarantined"


def test_all_pullable_exits_0_and_an_image_not_fetched_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = FakeAdmin([fetched("library/alpine:3.20", GOOD)], {GOOD: "passed"}, polls=0)
    assert run(["library/alpine:3.20"], admin) == 0
    why = "remote docker-hub (registry-1.docker.io) cannot be reached (connection refused)"
    admin = FakeAdmin([fetched("library/gone:1", None, why)], {}, polls=0)
    assert run(["library/gone:1"], admin) == 1
    out = capsys.readouterr().out
    assert f"could not fetch library/gone:1: {why}" in out and "1 image: 1 not fetched" in out


def test_no_wait_only_queues(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin([fetched("library/alpine:3.20", GOOD)], {GOOD: "passed"}, polls=0)
    assert run(["library/alpine:3.20", "--no-wait"], admin) == 1  # not known to be pullable yet
    assert admin.gets == {}
    assert "1 image: 1 still pending" in capsys.readouterr().out


def test_a_registry_host_in_the_reference_is_refused_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["prefetch", "docker.io/library/alpine:3.20"])
    assert exited.value.code == 2
    assert "reads as a registry host" in capsys.readouterr().err
