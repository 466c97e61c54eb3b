"""Blob transfers timed by curl, so the client is C reading into /dev/null, not Python.

A Python client moving a gigabyte on a two-core machine would compete with the proxy for CPU and
cap every target at its own speed; curl costs little and reports its own timings. Only
``http_code``, byte count and total time are taken from ``--write-out``; throughput is computed
here so every figure uses the same definition (bytes over total time, headers included).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, MeasurementError

_WRITE_OUT = "%{http_code} %{size_download} %{size_upload} %{time_total}"
TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Transfer:
    """What one curl request did."""

    status: int
    """HTTP status of the response."""
    downloaded: int
    """Response body bytes received."""
    uploaded: int
    """Request body bytes sent."""
    seconds: float
    """From starting to connect until the last response byte."""
    body: bytes
    """Response body when it was kept (uploads and failures), else empty."""

    def mb_per_s(self, nbytes: int) -> float:
        """``nbytes`` over the request's total time, in MB/s (10^6 bytes per second)."""
        return nbytes / self.seconds / 1e6


def curl_binary() -> str:
    """Path to curl, or a BenchError saying the benchmark needs it."""
    found = shutil.which("curl")
    if found is None:
        raise BenchError("curl is required (apt-get install curl)")
    return found


def download(url: str, cacert: Path | None = None) -> Transfer:
    """GET ``url`` into /dev/null, without following redirects (a redirect bypasses the target);
    over https trusting ``cacert``."""
    return _run([*_trust(cacert), "-o", "/dev/null", url], {}, keep_body=False)


def _trust(cacert: Path | None) -> list[str]:
    return ["--cacert", str(cacert)] if cacert is not None else []


def upload_file(url: str, path: Path, cacert: Path | None = None) -> Transfer:
    """PUT ``path`` as the request body with its Content-Length, as one monolithic upload.

    ``Expect:`` is cleared so curl does not wait for a ``100 Continue`` before sending; that
    would add a round trip (or a one-second stall) that measures curl, not the target.
    """
    headers = {"Content-Type": "application/octet-stream", "Expect": ""}
    # -T streams from the file; --data-binary @file would read all of it into curl's memory.
    return _run([*_trust(cacert), "-T", str(path), url], headers, keep_body=True)


def _run(args: list[str], headers: dict[str, str], *, keep_body: bool) -> Transfer:
    with tempfile.NamedTemporaryFile(prefix="bench-curl-") as body_file:
        command = [curl_binary(), "-sS", "--noproxy", "*", "--max-time", str(TIMEOUT_SECONDS)]
        for name, value in headers.items():
            command += ["-H", f"{name}:{' ' + value if value else ''}"]
        if keep_body:
            command += ["-o", body_file.name]
        command += ["-w", _WRITE_OUT, *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise MeasurementError(f"curl exit {done.returncode}: {done.stderr.strip()}")
        status, downloaded, uploaded, seconds = done.stdout.split()
        body = Path(body_file.name).read_bytes()[:65536] if keep_body else b""
    return Transfer(int(status), int(downloaded), int(uploaded), float(seconds), body)
