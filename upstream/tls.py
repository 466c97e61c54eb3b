"""The process's one verifying TLS context for the calls it makes with httpx.

httpx builds a new context for every client it creates and reads the whole CA bundle into it:
about 40 ms of CPU per client, and a process opens four at start (the upstream's token server,
remotes, advisory mirrors, webhooks), each serving process and worker again. An ``SSLContext``
is made to be shared by the connections it wraps, and these four trust the same authorities, so
one serves them all. Made on first use, with httpx's own defaults (certifi's bundle, or
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set), so what is trusted is what it was.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def verifying_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
