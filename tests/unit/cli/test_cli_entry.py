"""How a ``gatekeeper`` process ends (``cli/entry.py``): with the command's status and all of
its output, without the interpreter's teardown when nothing else runs, with it otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# A command through the entry point (or straight through ``main``), with an exit hook that only
# the interpreter's teardown calls, and optionally a thread still running when it returns.
SCRIPT = """
import atexit, sys, threading, time
atexit.register(lambda: print("torn down", file=sys.stderr, flush=True))
import cli.entry, cli.main
how, args = sys.argv[1], sys.argv[2:]
if how in ("short", "long"):
    def work():
        time.sleep(0.02 if how == "short" else 2)
        print("thread done", file=sys.stderr, flush=True)
    threading.Thread(target=work).start()
if how == "main":
    raise SystemExit(cli.main.main(args))
sys.argv = ["gatekeeper", *args]
cli.entry.run()
"""


def _run(how: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, how, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gatekeeper.toml"
    path.write_text(text)
    return str(path)


def test_the_status_and_every_line_of_output_survive(tmp_path: Path) -> None:
    good = _settings(tmp_path, 'upstream_url = "http://127.0.0.1:5001"\n')
    done = _run("alone", "check-config", "--config", good)
    assert done.returncode == 0, done.stderr
    assert "torn down" not in done.stderr, "nothing runs: the teardown is skipped"
    plain = _run("main", "check-config", "--config", good)
    assert plain.returncode == 0 and "torn down" in plain.stderr
    assert done.stdout == plain.stdout and len(done.stdout.splitlines()) > 20

    bad = _settings(tmp_path, "listen = 5\n")
    refused = _run("alone", "check-config", "--config", bad)
    assert refused.returncode == 2 and "configuration error" in refused.stderr


def test_a_thread_ending_soon_is_waited_for_and_one_running_on_gets_the_usual_exit(
    tmp_path: Path,
) -> None:
    good = _settings(tmp_path, 'upstream_url = "http://127.0.0.1:5001"\n')
    short = _run("short", "check-config", "--config", good)
    assert short.returncode == 0 and short.stderr.splitlines()[-1:] == ["thread done"]
    long = _run("long", "check-config", "--config", good)
    assert long.returncode == 0 and long.stderr.splitlines()[-2:] == ["thread done", "torn down"]
