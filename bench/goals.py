"""The gatekeeper's performance goals, in one place, as ratios against same-run baselines.

A goal is "target / baseline >= limit" (or "<=" where lower is better), so it holds on a fast
laptop and on the shared two-core runner alike; only peak RSS is absolute, because the point
there is that a gigabyte never sits in memory, whatever the machine.

Why these limits:

- sendfile pulls should cost next to nothing over the registry itself: the kernel copies.
- streaming copies every byte through Python; within three quarters of nginx (which copies
  through C) is what aiohttp's read loop allows on two cores (see ``bench.client_bench``).
- pushes are bound by the registry's own CPU (hashing), so any proxy CPU is taken from it;
  three quarters of nginx leaves room for the gatekeeper's per-chunk work and no more.
- streaming should not cost the gatekeeper more than twice nginx's CPU per GiB: both copy every
  byte once through userspace.
- a manifest GET through the gate costs a policy lookup and an audit row; half nginx's rate
  and twice its tail latency bound that per-request cost, and its CPU should not exceed what
  the registry itself spends on the same GET (the steadiest of these figures on a busy machine).
- peak RSS well under the blob size shows bodies are streamed, not buffered.

The report prints whether each goal is met; the exit status does not depend on it, because on
a noisy machine one run is evidence, not a verdict.
"""

from __future__ import annotations

from bench.results import (
    MANIFEST_CPU,
    MANIFEST_P99,
    MANIFEST_RPS,
    PEAK_RSS,
    PULL,
    PULL_CPU,
    PUSH,
    Goal,
)
from bench.targets import DIRECT, GATEKEEPER_SENDFILE, GATEKEEPER_STREAM, NGINX

PROXY_GOALS: tuple[Goal, ...] = (
    Goal(GATEKEEPER_SENDFILE, PULL, baseline=DIRECT, limit=0.85),
    Goal(GATEKEEPER_STREAM, PULL, baseline=NGINX, limit=0.75),
    Goal(GATEKEEPER_STREAM, PULL_CPU, baseline=NGINX, limit=2.0),
    Goal(GATEKEEPER_STREAM, PUSH, baseline=NGINX, limit=0.75),
    Goal(GATEKEEPER_STREAM, MANIFEST_RPS, baseline=NGINX, limit=0.5),
    Goal(GATEKEEPER_SENDFILE, MANIFEST_RPS, baseline=NGINX, limit=0.5),
    Goal(GATEKEEPER_STREAM, MANIFEST_P99, baseline=NGINX, limit=2.0),
    Goal(GATEKEEPER_STREAM, MANIFEST_CPU, baseline=DIRECT, limit=1.0),
    Goal(GATEKEEPER_SENDFILE, MANIFEST_CPU, baseline=DIRECT, limit=1.0),
    Goal(GATEKEEPER_STREAM, PEAK_RSS, baseline=None, limit=150),
    Goal(GATEKEEPER_SENDFILE, PEAK_RSS, baseline=None, limit=150),
)
