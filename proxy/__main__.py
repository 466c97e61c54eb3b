"""``python -m proxy`` is the same as the ``gatekeeper`` console script (kept because scripts,
tests and deployments start the gatekeeper that way); the command line lives in ``cli/``."""

from cli.entry import run

run()
