"""``python -m cli`` is the same as the ``gatekeeper`` console script."""

from cli.entry import run

run()
