"""``python -m proxy`` is the same as the ``gatekeeper`` console script."""

from proxy.cli import main

raise SystemExit(main())
