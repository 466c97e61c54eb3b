"""Run one fuzz target for a fixed time: ``python -m fuzz.run manifest --seconds 60``.

With atheris installed (``pip install -e .[fuzz]``) this is coverage-guided libFuzzer, with a
per-input timeout (hangs) and an RSS limit (runaway memory); a crashing input is written to
``fuzz/crashes/`` and belongs in ``tests/unit/proxy/test_fuzz_regressions.py``. Without atheris the
same target runs under hypothesis for the same time, which finds less but needs nothing native.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

NAMES = ("layer", "manifest", "reference")
CRASHES = Path(__file__).parent / "crashes"
MAX_LEN = 64 * 1024


def run_atheris(name: str, seconds: int) -> None:
    import atheris  # imported here: optional, native, and it instruments what follows

    CRASHES.mkdir(exist_ok=True)
    # Coverage only for our parsers (instrumenting every loaded module takes minutes).
    with atheris.instrument_imports(include=["proxy", "verifiers", "oci", "fuzz"]):
        from fuzz.targets import TARGETS
    from fuzz.seeds import SEEDS  # after: it imports oci.manifests, which must be instrumented

    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, seed in enumerate(SEEDS[name]()):
        (corpus / f"seed-{i}").write_bytes(seed)
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN}",
        "-timeout=20",  # seconds for one input: a hang is a finding
        "-rss_limit_mb=2048",  # so is unbounded memory
        f"-artifact_prefix={CRASHES}/{name}-",
        str(corpus),
    ]
    atheris.Setup(argv, TARGETS[name])
    atheris.Fuzz()


def run_hypothesis(name: str, seconds: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from fuzz.targets import TARGETS

    target = TARGETS[name]
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1

        @settings(
            max_examples=200,
            deadline=20_000,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.binary(max_size=MAX_LEN))
        def check(data: bytes) -> None:
            target(data)

        check()
    print(f"{name}: {rounds} hypothesis rounds in {seconds}s, no failure")


def main(target: str, seconds: int, engine: str) -> None:
    """Fuzz ``target`` for ``seconds`` with ``engine`` (``auto``: atheris when installed)."""
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "hypothesis"
        else:
            engine = "atheris"
    if engine == "atheris":
        run_atheris(target, seconds)
    else:
        run_hypothesis(target, seconds)


if __name__ == "__main__":
    from fuzz.cli import run

    run()
