"""nginx as a plain reverse proxy in front of the registry: the bar a well-built proxy sets.

Buffering is off in both directions and the body size is unlimited, so nginx streams blobs like
the gatekeeper has to, instead of spooling them to temp files. With buffering off, nginx moves a
body through one buffer of ``proxy_buffer_size`` (responses) or ``client_body_buffer_size``
(requests), which default to a page or two: measured here, that pulls at about 40% of what
256 KiB buffers give and pushes at about 65%, so both are raised to 256 KiB to make nginx the bar
a tuned deployment sets rather than a straw man. Everything nginx writes (config, pid, logs, temp
dirs) lives under its own prefix, so nothing touches the system's nginx.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.errors import TargetUnavailable
from tests.support.procs import free_port, wait_http

NGINX_BINARY = shutil.which("nginx") or "/usr/sbin/nginx"

_CONFIG = """\
{user}
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream registry {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        {body_buffer}
        location / {{
            proxy_pass http://registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_request_buffering off;
            {buffers}
            proxy_read_timeout 900s;
            proxy_send_timeout 900s;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """A running nginx master process (its workers are its children)."""

    url: str
    prefix: Path
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """SIGQUIT is nginx's graceful stop; fall back to kill if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(3)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


TUNED_BODY = "client_body_buffer_size 256k;"
TUNED_BUFFERS = "proxy_buffer_size 256k; proxy_buffers 8 256k; proxy_busy_buffers_size 512k;"


def start_nginx(workdir: Path, upstream: str, *, tuned: bool = True) -> Nginx:
    """Start nginx on a free loopback port proxying to ``upstream`` (``host:port``).

    ``tuned=False`` is the configuration operators usually run and the issue names:
    buffering off with nginx's default buffer sizes (reported as ``nginx-default``).

    ``Host`` is passed through so the registry writes upload ``Location`` URLs on nginx's port.
    ``user root;`` is only set when running as root, where nginx would otherwise drop its
    workers to ``nobody``, who cannot read the prefix.
    """
    prefix = workdir.resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        _CONFIG.format(
            user=user,
            prefix=prefix,
            upstream=upstream,
            port=port,
            body_buffer=TUNED_BODY if tuned else "",
            buffers=TUNED_BUFFERS if tuned else "",
        )
    )
    command = [NGINX_BINARY, "-e", str(prefix / "error.log"), "-c", str(conf), "-p", str(prefix)]
    # A bad config makes nginx exit at once; testing it first reports that without a timeout.
    try:
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise TargetUnavailable(f"cannot run {NGINX_BINARY}: {exc}") from exc
    if checked.returncode != 0:
        raise TargetUnavailable(f"nginx rejected its config {conf}: {checked.stderr.strip()}")
    log = (prefix / "stderr.log").open("ab")
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    nginx = Nginx(url=f"http://127.0.0.1:{port}", prefix=prefix, process=process)
    try:
        wait_http(f"{nginx.url}/v2/", timeout=10)
    except RuntimeError as exc:
        nginx.stop()
        logs = "".join(_tail(prefix / name) for name in ("stderr.log", "error.log"))
        raise TargetUnavailable(f"nginx did not start: {exc}\n{logs}") from exc
    return nginx


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""
