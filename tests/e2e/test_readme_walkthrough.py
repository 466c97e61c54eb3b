"""The README's ten-minute walk-through, every command of it, run as written (issue 16).

The commands are read from the README itself (every ``sh`` block of the section "Ten minutes:
two images quarantined, one released", in order), in a copy of this working tree, with the
real ``scripts/run`` serving registry and gatekeeper, the real podman (isolated from the host:
``tests/support/clients.py``) and the real ``gatekeeper`` commands. Two things differ from a
user's terminal, so that the test can run beside others: the gatekeeper listens on a free port
(the README's ``127.0.0.1:5000`` is replaced by it, and ``GATEKEEPER_ADMIN_URL`` names it for
``gatekeeper login``) and the registry on another (``REGISTRY_HTTP_ADDR``, which ``scripts/run``
honours). On ``--db=postgresql`` the gatekeeper and the commands share a PostgreSQL database
(``GATEKEEPER_DATABASE_URL``), as an operator's would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import database
from tests.support.clients import Podman
from tests.support.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Ten minutes: two images quarantined, one released"
README_ADDRESS = "127.0.0.1:5000"
LIBRARY_WARNING = re.compile(r"\b\w*Warning: ")
"""How Python prints a library warning (``UserWarning: ...``): none belongs in a normal run."""


def walkthrough_blocks() -> list[str]:
    """The ``sh`` blocks of the walk-through section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"^```sh\n(.*?)^```$", text[start:end], flags=re.MULTILINE | re.DOTALL)


def copy_working_tree(target: Path) -> None:
    """The files of this checkout as they are now (committed or not, ignored ones left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def stand_in_venv(repo: Path) -> None:
    """``.venv`` for the copy, as ``scripts/run`` would install it, without the network: a
    virtualenv that sees this one's packages and the copy's code, a ``gatekeeper`` command,
    and the stamp that tells ``scripts/run`` nothing needs installing. (Never this checkout's
    own ``.venv``: ``scripts/run`` would re-point its editable install at the copy.)"""
    venv = repo / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    ours = [p for p in sys.path if p.startswith(sys.prefix) and p.endswith("site-packages")]
    (site / "registry-gatekeeper-copy.pth").write_text("\n".join([str(repo), *ours]) + "\n")
    command = venv / "bin" / "gatekeeper"
    command.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom cli.main import main\nsys.exit(main())\n"
    )
    command.chmod(0o755)
    digest = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".gatekeeper-installed").write_text(digest + "\n")


@dataclass
class Walk:
    """A copy of the repository, the environment of the user's terminal, and what ran."""

    repo: Path
    env: dict[str, str]
    port: int
    outputs: list[tuple[str, str]] = field(default_factory=list)
    """(block, its stdout and stderr) of every block run in the foreground."""
    server: subprocess.Popen[bytes] | None = None

    def run(self, block: str) -> None:
        command = block.replace(README_ADDRESS, f"127.0.0.1:{self.port}")
        if command.strip().startswith("scripts/run"):
            self._serve(command)
            return
        # As a terminal runs them (a pipeline's status is its last command's: `pull | grep`
        # succeeds when grep finds the denial), but stopping at the first command that fails.
        done = subprocess.run(
            ["bash", "-eu", "-c", command],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"README block failed:\n{command}\n---\n{output[-6000:]}"
        self.outputs.append((block, output))

    def _serve(self, command: str) -> None:
        log = (self.repo / "scripts-run.log").open("ab")
        self.server = subprocess.Popen(
            ["bash", "-c", command], cwd=self.repo, env=self.env, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.server.poll() is None, self.log()[-6000:]
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"scripts/run did not serve in time:\n{self.log()[-6000:]}")

    def log(self) -> str:
        return (self.repo / "scripts-run.log").read_text(errors="replace")

    def output_of(self, fragment: str) -> str:
        """The output of the block holding ``fragment``."""
        found = [out for block, out in self.outputs if fragment in block]
        assert found, f"no README block with {fragment!r}"
        return found[0]

    def stop(self) -> None:
        """SIGTERM to scripts/run, whose traps stop the gatekeeper and then the registry."""
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        registry_pid = self.repo / "var" / "registry.pid"
        if registry_pid.exists():  # only if the traps did not run: our registry, by its pid
            pid = int(registry_pid.read_text().strip() or 0)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    repo = tmp_path / "registry-gatekeeper"
    copy_working_tree(repo)
    stand_in_venv(repo)
    port = free_port()
    podman = Podman(tmp_path / "podman", [f"127.0.0.1:{port}"])
    env = {
        **podman.env,
        "GATEKEEPER_LISTEN": f"127.0.0.1:{port}",
        "GATEKEEPER_ADMIN_URL": f"http://127.0.0.1:{port}",
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
    }
    if database.backend() == "postgresql":
        env["GATEKEEPER_DATABASE_URL"] = database.fresh(tmp_path).url
    walk = Walk(repo, env, port)
    try:
        yield walk
    finally:
        walk.stop()
        podman.close()


def test_every_command_of_the_walkthrough_works_as_written(walk: Walk) -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) >= 6 and blocks[0].strip() == "scripts/run", blocks
    for block in blocks:
        walk.run(block)

    # Both quarantined, each for what it holds, and the denial names the release command.
    denied_sshd = walk.output_of("pull --tls-verify=false 127.0.0.1:5000/demo/sshd:1 2>&1")
    assert "hardening.ssh-server" in denied_sshd and "hardening.setuid" in denied_sshd
    assert "gatekeeper quarantine release demo/sshd@sha256:" in denied_sshd
    denied_leaky = walk.output_of("pull --tls-verify=false 127.0.0.1:5000/demo/leaky:1 2>&1")
    assert "secret.private-key" in denied_leaky
    listed = walk.output_of("quarantine list --state quarantined")
    assert re.search(r"demo/leaky@sha256:\S+\s+quarantined", listed), listed
    assert re.search(r"demo/sshd@sha256:\S+\s+quarantined", listed), listed
    shown = walk.output_of("quarantine show")
    assert "state:    quarantined (cannot be pulled)" in shown
    assert re.search(r"high\s+secrets\s+secret\.private-key", shown), shown

    # One released, with its reason and end, and then pulled.
    released = walk.output_of("quarantine release")
    assert re.search(r"released demo/sshd@sha256:\S+ until .* \(by admin\)", released), released
    pulled = walk.output_of("podman pull --tls-verify=false 127.0.0.1:5000/demo/sshd:1\n")
    assert "Writing manifest to image destination" in pulled, pulled

    # The access log: the refused pull and the one that passed, and the verdict changes.
    audit = walk.output_of("audit -r demo/sshd")
    assert re.search(r"manifest\.pull\s+demo/sshd\s+\S+\s+403", audit), audit
    assert re.search(r"manifest\.pull\s+demo/sshd\s+\S+\s+200", audit), audit
    assert "verdict.released" in audit and "verdict.quarantined" in audit
    rows = [json.loads(line) for line in audit.splitlines() if line.startswith("{")]
    assert rows and {(r["repository"], r["action"], r["status"]) for r in rows} == {
        ("demo/leaky", "manifest.pull", 403)
    }, rows

    # A normal run prints no library warnings, in the commands' output or the server's log.
    for block, output in walk.outputs:
        assert not LIBRARY_WARNING.search(output), (block, output)
    assert not LIBRARY_WARNING.search(walk.log()), walk.log()[-4000:]
