"""Benchmarks that state the gatekeeper's performance as ratios against baselines of the same run.

Absolute numbers on a shared, noisy two-core machine mean little from one run to the next; the
registry reached directly and nginx in front of the same registry, measured minutes apart on the
same blob, are what the gatekeeper's figures are divided by. Nothing here is a unit test: run
``python -m bench.proxy_bench`` or ``python -m bench.client_bench`` (see ``bench/README.md``).
Every benchmark's options are read in ``bench/cli.py``; the benchmark modules take typed
arguments.
"""
