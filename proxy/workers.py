"""``gatekeeper serve --workers N``: N serving processes on one port, and one verifying process,
under a pre-forking parent.

One Python process serves on one core; the machine has more. The parent binds the listening
sockets first (a busy port ends the start before anything else, as with one process), then
forks the children, which inherit them: every serving child accepts on the same sockets, so a
child that stops (to restart, or to exit) just stops accepting while the others go on, and no
connection waiting in the kernel's queue is lost (with ``SO_REUSEPORT`` each child would have
a queue of its own, and the connections in a closing child's queue would be reset). A busy
child accepts less often than an idle one, which spreads the load by itself.

Each child is a replica of its own, as two gatekeepers on one host already are: its own
access-log writer and spool files (``proxy.audit_spool``: one per process), its own upload
sessions' holder, its own share of the scheduler's leases. The serving children run no
verification (``verification.workers = 0``): that is the verifying child's job
(``gatekeeper worker``, which serves no port), so a layer scan never takes a serving loop's
CPU, and more verifying processes can run on other machines against the same PostgreSQL.

The parent only supervises, with every signal it handles blocked and taken one at a time by
``sigwaitinfo`` (no handler runs at an arbitrary point):

- ``SIGTERM``/``SIGINT``: every child gets ``SIGTERM`` and finishes what it serves (the
  shutdown timeout), then the parent exits;
- ``SIGHUP``: a rolling restart, one child at a time (the next once the previous is replaced);
- a child that cannot start (exit status :data:`CANNOT_START`: the database unreachable, the
  spool unwritable) stops everything with exit status 1, as a single process that cannot
  start does, however long it took to find out; a child that exits otherwise is started
  again, unless it keeps crashing right after its start (three times in a row within
  :data:`STARTUP_SECONDS`). ``SIGTERM`` to one child restarts that child.

A child dies with its parent (``PR_SET_PDEATHSIG``: ``SIGTERM``), so a parent killed outright
leaves no orphan serving a port nobody supervises. prometheus-client's multiprocess mode sums
the children's metrics on every scrape (``proxy.metrics``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("gatekeeper.workers")

HANDLED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
STARTUP_SECONDS = 10.0
"""A child that exits with an error sooner than this after its start failed to start."""
MAX_START_FAILURES = 3
CANNOT_START = 1
"""A child's exit status when it could not start (``cli.serve``'s one-line error)."""
CRASHED = 70
"""A child's exit status when its target raised (EX_SOFTWARE)."""
PR_SET_PDEATHSIG = 1
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

Target = Callable[[], int]
"""What a child runs; its return value is the child's exit status."""


@dataclass
class _Child:
    role: str
    target: Target
    started: float = field(default_factory=time.monotonic)


def metrics_directory() -> str | None:
    """Set up prometheus-client's multiprocess mode before anything imports it (the mode is
    chosen when the library is imported): a fresh directory unless the operator named one.
    Returns the directory to remove at the end, if this made it."""
    if os.environ.get(MULTIPROC_ENV):
        return None
    made = tempfile.mkdtemp(prefix="gatekeeper-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


class Supervisor:
    """The parent: starts the children, restarts them, stops them."""

    def __init__(self, children: list[tuple[str, Target]]) -> None:
        self._wanted = children
        self._running: dict[int, _Child] = {}
        self._stopping = False
        self._restarting: list[int] = []
        self._failures = 0
        self.status = 0

    def run(self) -> int:
        """Supervise until stopped; the exit status (1 if the children could not start)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        for role, target in self._wanted:
            self._spawn(_Child(role, target))
        while self._running:
            received = signal.sigwaitinfo(HANDLED)
            if received.si_signo == signal.SIGCHLD:
                self._reap()
            elif received.si_signo == signal.SIGHUP and not self._stopping:
                self._restarting = [p for p, c in self._running.items() if c.role == "serve"]
                log.info("rolling restart of %d serving processes", len(self._restarting))
                self._restart_next()
            elif received.si_signo in (signal.SIGTERM, signal.SIGINT):
                self.stop()
        return self.status

    def stop(self) -> None:
        """Every child finishes what it serves and exits; the parent waits for them."""
        self._stopping = True
        for pid in self._running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _spawn(self, child: _Child) -> None:
        child.started = time.monotonic()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: it never returns from here
            status = CRASHED
            try:
                _become_child(parent)
                status = child.target()
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(status)
        self._running[pid] = child
        log.info("started %s process %d", child.role, pid)

    def _reap(self) -> None:
        while self._running:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._running.pop(pid, None)
            if child is not None:
                self._exited(pid, child, os.waitstatus_to_exitcode(wait_status))

    def _exited(self, pid: int, child: _Child, code: int) -> None:
        _forget_metrics(pid)
        if self._stopping:
            log.info("%s process %d stopped (status %d)", child.role, pid, code)
            return
        if code == CANNOT_START:
            log.error("%s process %d could not start; stopping", child.role, pid)
            self.status = 1
            self.stop()
            return
        early = time.monotonic() - child.started < STARTUP_SECONDS
        if code != 0 and early:
            self._failures += 1
            if self._failures >= MAX_START_FAILURES:
                log.error("%s processes keep failing at start; stopping", child.role)
                self.status = 1
                self.stop()
                return
        else:
            self._failures = 0
        log.warning("%s process %d exited (status %d); starting another", child.role, pid, code)
        self._spawn(child)
        if pid in self._restarting:
            self._restarting.remove(pid)
            self._restart_next()

    def _restart_next(self) -> None:
        while self._restarting:
            pid = self._restarting[0]
            try:
                os.kill(pid, signal.SIGTERM)
                return
            except ProcessLookupError:
                self._restarting.pop(0)


def _become_child(parent: int) -> None:
    """Undo the parent's signal set-up, and die with the parent."""
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(1)


def _forget_metrics(pid: int) -> None:
    """A gone child's live gauges no longer count (prometheus-client's multiprocess mode)."""
    if not os.environ.get(MULTIPROC_ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def remove_metrics_directory(made: str | None) -> None:
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def default_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) or 1
