"""``python -m cli`` is the same as the ``gatekeeper`` console script."""

from cli.main import main

raise SystemExit(main())
