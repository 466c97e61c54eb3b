"""The test zygote (tests/support/zygote.py) starts gatekeepers as a fresh interpreter would:
the same answers, the same exit statuses, signals by pid, and no product module that read its
environment before the child's environment was set."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import zygote as zygotes
from tests.support.gatekeeper import make_gatekeeper

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def zygote() -> Iterator[zygotes.Zygote]:
    forks = zygotes.Zygote()
    yield forks
    forks.close()


RECORD_IMPORT_TIME_READS = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    root = Path.cwd()
    packages = {str(root / name) for name in ("config", "oci", "storage", "verifiers",
                                              "services", "proxy", "cli")}
    read = set()
    kind = type(os.environ)
    for method in ("__getitem__", "get", "__contains__"):
        original = getattr(kind, method)
        def recorded(self, key, *rest, _original=original, **named):
            # Who asked: the first caller outside os, posixpath and the mapping machinery.
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(
                ("<frozen", os.path.dirname(os.__file__) + "/os.py")
            ):
                frame = frame.f_back
            name = frame.f_code.co_filename if frame is not None else ""
            if any(name.startswith(p + "/") for p in packages):
                read.add(key)
            return _original(self, key, *rest, **named)
        setattr(kind, method, recorded)
    from tests.support import zygote
    zygote._preload()
    print(json.dumps(sorted(read)))
    """
)


def test_no_product_module_reads_the_environment_while_it_is_imported() -> None:
    """A module that did would see the zygote's environment in every forked child."""
    done = subprocess.run(
        [sys.executable, "-c", RECORD_IMPORT_TIME_READS],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout) == []


def _fresh(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *argv], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("upstream", "shown"),
    [("http://registry.example:5000", "http://registry.example:5000"), ("not a", "upstream_url")],
    ids=["valid", "invalid"],
)
def test_a_forked_call_answers_as_a_fresh_interpreter_does(
    zygote: zygotes.Zygote, tmp_path: Path, upstream: str, shown: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "GATEKEEPER_UPSTREAM_URL": upstream,
        "GATEKEEPER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gk.db'}",
    }
    fresh = _fresh(["check-config"], env)
    forked = zygotes.run(zygote, ["check-config"], env, tmp_path / "cli", timeout=60)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert shown in fresh.stdout + fresh.stderr  # the child's environment, not the zygote's


def test_a_forked_call_reads_the_input_it_is_given_and_nothing_else(
    zygote: zygotes.Zygote, tmp_path: Path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "GATEKEEPER_UPSTREAM_URL": "http://registry.example:5000",
        "GATEKEEPER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gk.db'}",
    }
    argv = ["users", "create", "alice", "--password-stdin"]
    empty = zygotes.run(zygote, argv, env, tmp_path / "cli", timeout=60)
    assert empty.returncode == 2 and "at least 12 characters" in empty.stderr, empty.stderr
    given = zygotes.run(
        zygote, argv, env, tmp_path / "cli", timeout=60, input="correct-horse-battery-42\n"
    )
    assert given.returncode == 0, given.stderr
    assert "alice" in given.stdout
    assert not list((tmp_path / "cli").iterdir()), "the stream files are removed"


def test_a_forked_server_is_signalled_waited_for_and_reaped(
    zygote: zygotes.Zygote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zygotes, "_ZYGOTE", zygote)
    gk = make_gatekeeper(tmp_path / "gk", "http://127.0.0.1:9")
    process = gk.process
    assert isinstance(process, zygotes.Forked)
    assert httpx.get(f"{gk.url}/healthz", timeout=10).status_code == 200
    assert process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0  # a clean stop, as `gatekeeper serve` exits on SIGTERM
    process.kill()  # after the exit: nothing to signal, and no other process reached
    assert process.poll() == 0
    assert "Traceback" not in gk.log_path.read_text()


@pytest.mark.parametrize(
    ("env", "argv"),
    [
        ({"GATEKEEPER_WORKERS": "2"}, ["serve"]),
        ({"PROMETHEUS_MULTIPROC_DIR": "/tmp/metrics"}, ["serve"]),
        ({}, ["serve", "--workers", "2"]),
        ({}, ["serve", "--workers=2"]),
    ],
    ids=["workers-setting", "prometheus-multiprocess", "workers-option", "workers-option="],
)
def test_processes_that_pick_a_metrics_mode_at_import_start_fresh(
    zygote: zygotes.Zygote, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: list[str]
) -> None:
    monkeypatch.setattr(zygotes, "_ZYGOTE", zygote)
    monkeypatch.delenv(zygotes.ENABLED_ENV, raising=False)
    assert zygotes.usable({"GATEKEEPER_WORKERS": "1"}, ["serve"]) is zygote
    assert zygotes.usable(env, argv) is None
    monkeypatch.setenv(zygotes.ENABLED_ENV, "0")
    assert zygotes.usable({"GATEKEEPER_WORKERS": "1"}) is None
