"""The README's "Gate a public registry" section, run as written: its registry settings start
a real ``docker-registry`` in proxy mode, its gatekeeper settings are checked and served, each
of its commands runs (``gatekeeper``, ``skopeo``, ``podman``) and must succeed, and its
``registries.conf`` makes podman pull ``docker.io/library/...`` through the gatekeeper.

Only addresses change: Docker Hub is a local registry holding small images under the names the
section uses (behind a front, like the internet), and the gatekeeper listens on a free port.
Each block is found by the HTML comment before it, so a block that moves or changes shape
fails here instead of going stale.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import Podman, Skopeo
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, wait_state
from tests.support.procs import free_port
from tests.support.pullthrough import PublicImage, RemoteFront, publish
from tests.support.registry import Registry, make_registry

pytestmark = [pytest.mark.e2e]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Gate a public registry"
HUB = "https://registry-1.docker.io"
TOKEN = "readme-admin-token"
IMAGES = ("library/alpine:3.20", "library/python:3.12-slim", "library/busybox:1.36")
MIRRORED = "library/hello-world:latest"
"""Pulled as docker.io/library/hello-world through the mirror configuration."""


def blocks() -> dict[str, str]:
    """The section's fenced blocks that carry a ``<!-- pullthrough-test: NAME -->`` marker."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    section = text[start : text.index("\n## ", start + 1)]
    found = re.findall(r"<!-- pullthrough-test: (\S+) -->\n```\w*\n(.*?)\n```", section, re.S)
    return dict(found)


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced, which must be there (the README changed otherwise)."""
    assert old in text, f"the README's block no longer contains {old!r}"
    return text.replace(old, new)


@pytest.fixture(scope="module")
def section() -> dict[str, str]:
    found = blocks()
    assert set(found) == {"registry", "registries.conf", "gatekeeper.toml", "commands"}
    return found


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, RemoteFront]]:
    public = make_registry(tmp_path_factory.mktemp("hub"))
    front = RemoteFront(public.port)
    yield public, front
    front.go_down()
    public.stop()


@pytest.fixture(scope="module")
def images(hub: tuple[Registry, RemoteFront]) -> dict[str, PublicImage]:
    public, _ = hub
    made = {}
    for text in (*IMAGES, MIRRORED):
        repository, _, tag = text.partition(":")
        made[text] = publish(public, repository, tag, {"etc/motd": f"{text}\n".encode()})
    return made


@pytest.fixture(scope="module")
def registry(
    section: dict[str, str],
    hub: tuple[Registry, RemoteFront],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Registry]:
    """The registry in proxy mode, from the README's settings."""
    workdir = tmp_path_factory.mktemp("cache")
    port = free_port()
    config = replaced(section["registry"], HUB, hub[1].url)
    config = replaced(config, "/var/lib/registry", str(workdir / "storage"))
    config = replaced(config, "127.0.0.1:5001", f"127.0.0.1:{port}")
    path = workdir / "config.yml"
    path.write_text(config, encoding="utf-8")
    started = Registry(f"http://127.0.0.1:{port}", port, workdir / "storage", path, workdir / "log")
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def settings_file(
    section: dict[str, str],
    registry: Registry,
    hub: tuple[Registry, RemoteFront],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    text = replaced(section["gatekeeper.toml"], "http://127.0.0.1:5001", registry.url)
    text = replaced(text, HUB, hub[1].url)
    path = tmp_path_factory.mktemp("etc") / "gatekeeper.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gk(
    settings_file: Path,
    registry: Registry,
    images: dict[str, PublicImage],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gatekeeper]:
    """``gatekeeper serve --config`` with the README's file; the environment only moves the
    database and the port, and keeps the advisory sync off the internet."""
    started = make_gatekeeper(tmp_path_factory.mktemp("gk"), registry.url, start=False)
    for name in ("GATEKEEPER_POLICIES", "GATEKEEPER_AUTH__ENABLED", "GATEKEEPER_UPSTREAM_URL"):
        del started.env[name]
    started.env["GATEKEEPER_ADVISORIES__SYNC_INTERVAL"] = "off"
    started.env["GATEKEEPER_ADMIN_TOKEN"] = TOKEN
    started.extra_args = ["--config", str(settings_file)]
    started.start()
    yield started
    started.stop()


def run(
    line: str, gk: Gatekeeper, settings_file: Path, workdir: Path
) -> subprocess.CompletedProcess[str] | None:
    """One command of the README, with the test's addresses."""
    args = [
        arg.replace("127.0.0.1:5000", gk.host).replace(
            "/etc/gatekeeper/gatekeeper.toml", str(settings_file)
        )
        for arg in shlex.split(line, comments=True)
    ]
    if not args:
        return None
    program, rest = args[0], args[1:]
    if program == "gatekeeper":
        env = {**gk.env, "GATEKEEPER_ADMIN_URL": gk.url, "GATEKEEPER_ADMIN_TOKEN": TOKEN}
        done = subprocess.run(
            [sys.executable, "-m", "proxy", *rest],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        return done
    if program == "skopeo":
        Skopeo(workdir / "skopeo", [gk.host])._run(["skopeo", "--debug", *rest])
        return None
    if program == "podman":
        with Podman(workdir / "podman", [gk.host]) as podman:
            podman._podman(*rest)
        return None
    raise AssertionError(f"the README runs {program!r}, which this test does not know")


def test_the_sections_commands_run_as_written(
    section: dict[str, str],
    gk: Gatekeeper,
    settings_file: Path,
    images: dict[str, PublicImage],
    tmp_path: Path,
) -> None:
    outputs = []
    for number, line in enumerate(section["commands"].splitlines()):
        done = run(line, gk, settings_file, tmp_path / str(number))
        outputs.append(done.stdout if done else "")
    checked, prefetched = outputs[0], outputs[1]
    assert f"{settings_file}: OK" in checked
    assert "2 images: 2 passed" in prefetched, prefetched
    for text in IMAGES:
        image = images[text]
        assert wait_state(gk, image.digest) == "passed"
        rows = gk.database.fetch(
            "SELECT origin, policy FROM verdicts WHERE digest = :d", {"d": image.digest}
        )
        assert rows == [{"origin": "docker-hub", "policy": "docker-hub"}]
    pulled = gk.audit_rows(
        "repository = 'library/busybox' AND action = 'manifest.pull' AND status = 200"
    )
    assert pulled and pulled[0]["decision"] == "allow"  # a first pull: verified, then served


def test_the_mirror_configuration_pulls_docker_io_names_through_the_gatekeeper(
    section: dict[str, str], gk: Gatekeeper, images: dict[str, PublicImage], tmp_path: Path
) -> None:
    config = replaced(section["registries.conf"], "gatekeeper.example.com", gk.host)
    # Without TLS (this test's gatekeeper), the mirror must be marked insecure.
    config = replaced(config, f'location = "{gk.host}"', f'location = "{gk.host}"\ninsecure = true')
    with Podman(tmp_path / "podman", []) as podman:
        conf = Path(podman.env["HOME"]) / ".config" / "containers" / "registries.conf"
        conf.write_text("unqualified-search-registries = []\n" + config, encoding="utf-8")
        podman.pull(f"docker.io/{MIRRORED}")
    image = images[MIRRORED]
    rows = gk.audit_rows(
        "repository = 'library/hello-world' AND action = 'manifest.pull' AND status = 200"
    )
    assert rows, "podman did not pull through the gatekeeper"
    assert wait_state(gk, image.digest) == "passed"
