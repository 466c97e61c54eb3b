"""The process entry point of ``gatekeeper`` and ``python -m proxy``: run the command, then end
the process without tearing the interpreter down.

Once a command has returned it has closed what it opened (a serving process its listener, the
access log drained, the database; a CLI call its client). What the interpreter would still do is
free, one by one, the objects of every module it imported: about 0.55 s of CPU at each stop of a
serving process or worker and at the end of every CLI call (measured on a two-core machine; a
stop took 0.67 s, 0.11 s without it). So once the output is flushed the process ends with
``os._exit`` and the command's status, after the other threads have ended (a moment in all).
Where one that the usual exit would wait for is still running, or the output cannot be flushed
(a closed pipe), the usual exit runs instead, with what it does there (waiting for the thread,
reporting the pipe). A command that raises ends as it always did.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import NoReturn

from cli.main import main


def run() -> NoReturn:
    code = main()
    if not _others_finished(within=0.25):
        raise SystemExit(code)
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        raise SystemExit(code) from None
    os._exit(code)


def _others_finished(within: float) -> bool:
    """Give the other threads up to ``within`` seconds in all to end; False when one that the
    usual exit would wait for (not a daemon) is still running then. A daemon still running
    (say aiosqlite's, closing its connection) got its moment and is left, as the usual exit
    leaves it."""
    deadline = time.monotonic() + within
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive() and not thread.daemon:
                return False
    return True
