"""The fuzzer's command line (``python -m fuzz.run manifest --seconds 60``), read here so that
``fuzz/run.py`` takes typed arguments and ``argparse`` is imported in one module of ``fuzz``
(``tests/unit/test_layers.py`` checks it)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def run(argv: Sequence[str] | None = None) -> None:
    from fuzz import run as fuzz

    parser = argparse.ArgumentParser(description=fuzz.__doc__)
    parser.add_argument("target", choices=fuzz.NAMES)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    args = parser.parse_args(argv)
    fuzz.main(args.target, args.seconds, args.engine)
