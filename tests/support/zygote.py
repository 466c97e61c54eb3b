"""Start test gatekeepers and CLI calls by forking a process that has already imported the
product, instead of a fresh interpreter each time.

Why: a fresh ``python -m proxy`` spends about 1.3 s of CPU importing aiohttp, SQLAlchemy,
pydantic, cryptography and the product before it does anything, and the suite starts several
hundred of them per database backend; on a two-core machine that import work was the largest
share of the suite's CPU. A forked child shares the imported modules and starts in a fraction
of that.

What stays the same: the child runs ``python -m proxy ARGS`` exactly as the interpreter would
(``runpy`` on the ``proxy`` package with ``sys.argv`` set), with only the environment, working
directory and standard streams the test gave it, as a process of its own that the test signals
and waits for by pid. What differs: the product's modules were imported before the child's
environment was set, so a module that read the environment at import time would see the
zygote's. None does (``tests/unit/test_zygote.py`` keeps it so), except prometheus-client,
which picks its multiprocess mode at import: processes that run several workers
(``GATEKEEPER_WORKERS`` other than 1) are therefore always started the ordinary way, as are
tests that start ``python -m proxy`` themselves, the README walk-throughs and the benchmarks.
``GATEKEEPER_TEST_FORK=0`` turns the zygote off for a whole run.

Protocol (one JSON line each way, over the zygote's stdin and stdout): ``spawn`` (argv, env,
cwd, three file paths for the standard streams) answers the child's pid; ``poll`` answers its
exit status once it has exited, reaping it, else null. The zygote reaps a child only when asked,
so its pid cannot be reused while the test may still signal it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "oci", "storage", "verifiers", "services", "proxy", "cli")
"""What the zygote imports before forking: every module of the product but entry points."""
SKIP_SUFFIXES = (".__main__",)
LAZY_IMPORTS = (
    "alembic.command",
    "alembic.config",
    "alembic.runtime.migration",
    "alembic.script",
    "httpcore",
    "anyio._backends._asyncio",
)
"""What every child imported after the fork (the product imports them on first use: Alembic and
its Mako and Pygments when it checks or migrates the schema at start, httpcore with anyio and
trio when the first httpx client is made): about 230 modules and 0.3-0.6 s of CPU per start,
paid once here instead."""
ENABLED_ENV = "GATEKEEPER_TEST_FORK"


def _preload() -> None:
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if info.name.endswith(SKIP_SUFFIXES) or ".migrations." in info.name:
                continue
            importlib.import_module(info.name)
    for name in LAZY_IMPORTS:
        importlib.import_module(name)


def _child(request: Mapping[str, Any]) -> int:
    """In the forked child: become ``python -m proxy ARGS`` and run it; its exit status."""
    # The dispositions a fresh interpreter starts with (the zygote changed none, but say so).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for number in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    stdin = os.open(request.get("stdin") or os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, fd)
        os.close(out)
    os.close(stdin)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stream
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["-m", *request["argv"]]
    try:
        runpy.run_module("proxy", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _serve() -> int:
    """The zygote's loop: answer requests until stdin closes."""
    _preload()
    assert threading.active_count() == 1, "a preloaded module started a thread: cannot fork"
    requests = sys.stdin
    answers = sys.stdout
    for line in requests:
        request = json.loads(line)
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                return _child(request)
            answer: object = pid
        else:
            done, status = os.waitpid(request["pid"], os.WNOHANG)
            answer = None if done == 0 else os.waitstatus_to_exitcode(status)
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


class Forked:
    """A forked ``python -m proxy`` child, with the part of ``subprocess.Popen`` tests use."""

    def __init__(self, zygote: Zygote, pid: int, args: Sequence[str]) -> None:
        self._zygote = zygote
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.poll(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        # The zygote reaps only when polled, so a pid not yet polled as exited is still this
        # child's (alive or a zombie): signalling it cannot reach another process.
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The test process's end: one zygote per pytest process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def _started(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONPATH": str(ROOT),
            }
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=ROOT,
                text=True,
            )
        return self._process

    def _ask(self, request: Mapping[str, Any]) -> Any:
        with self._lock:
            process = self._started()
            stdin, stdout = process.stdin, process.stdout
            assert stdin is not None and stdout is not None
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"the test zygote exited ({process.wait()})")
            return json.loads(line)

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        stdout: Path,
        stderr: Path,
        cwd: Path | None = None,
        stdin: Path | None = None,
    ) -> Forked:
        """Start ``python -m proxy ARGV`` with exactly ``env``, streams appended to files
        (standard input read from ``stdin``, else empty)."""
        request = {
            "op": "spawn",
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd or Path.cwd()),
            "stdout": str(stdout),
            "stderr": str(stderr),
            "stdin": None if stdin is None else str(stdin),
        }
        return Forked(self, int(self._ask(request)), ["python", "-m", "proxy", *argv])

    def poll(self, pid: int) -> int | None:
        answer = self._ask({"op": "poll", "pid": pid})
        return None if answer is None else int(answer)

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                stdin = self._process.stdin
                if stdin is not None:
                    stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(10)
                self._process = None


_ZYGOTE: Zygote | None = None


def configure(zygote: Zygote | None) -> None:
    """Set (tests/conftest.py, for a pytest run) or clear the zygote the helpers use; the one
    it replaces exits (its children do not: each test stops its own)."""
    global _ZYGOTE
    if _ZYGOTE is not None:
        _ZYGOTE.close()
    _ZYGOTE = zygote


def usable(env: Mapping[str, str], argv: Sequence[str] = ()) -> Zygote | None:
    """The zygote, if one is configured and ``python -m proxy ARGV`` with ``env`` may be
    forked from it: not when it runs several processes (``GATEKEEPER_WORKERS``,
    ``--workers``) or prometheus-client's multiprocess mode, both chosen at import."""
    if _ZYGOTE is None or os.environ.get(ENABLED_ENV, "1") == "0":
        return None
    if env.get("GATEKEEPER_WORKERS", "1") != "1" or "PROMETHEUS_MULTIPROC_DIR" in env:
        return None
    if any(arg.startswith("--workers") for arg in argv):
        return None
    return _ZYGOTE


def run(
    zygote: Zygote,
    argv: Sequence[str],
    env: Mapping[str, str],
    workdir: Path,
    timeout: float,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([python, -m, proxy, *argv], capture_output=True, text=True,
    input=input)`` through the zygote (the streams go through files in ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = _fresh(workdir, "stdout"), _fresh(workdir, "stderr")
    stdin = None
    if input is not None:
        stdin = _fresh(workdir, "stdin")
        stdin.write_text(input)
    child = zygote.spawn(argv, env, stdout, stderr, stdin=stdin)
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise
    out, err = stdout.read_text(), stderr.read_text()
    for path in (stdout, stderr, stdin):
        if path is not None:
            path.unlink()
    return subprocess.CompletedProcess(child.args, code, out, err)


def _fresh(workdir: Path, kind: str) -> Path:
    path = workdir / f"cli-{os.getpid()}-{time.monotonic_ns()}.{kind}"
    path.touch()
    return path


def _main() -> int:
    code = _serve()
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(_main())
