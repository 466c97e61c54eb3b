"""Start the real CNCF Distribution registry (Debian's ``docker-registry``) on a loopback port.

Each registry gets its own storage directory, so tests never share state, and the storage root
is exposed because the gatekeeper's sendfile path reads blobs from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import free_port, wait_http

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@dataclass
class Registry:
    """A running registry process and where it keeps its data."""

    url: str
    port: int
    storage_root: Path
    config_path: Path
    log_path: Path
    extra_config: dict[str, object] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """(Re)start the process on the same port and storage, e.g. after ``stop``."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        log.close()
        wait_http(f"{self.url}/v2/")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def make_registry(workdir: Path, extra_config: dict[str, object] | None = None) -> Registry:
    """Write a config for a registry under ``workdir`` and start it.

    ``extra_config`` is merged into the top level of the registry's config (e.g. an ``auth``
    section); the registry accepts JSON because JSON is YAML.
    """
    port = free_port()
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret"},
    }
    config.update(extra_config or {})
    config_path = workdir / "registry.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    registry = Registry(
        url=f"http://127.0.0.1:{port}",
        port=port,
        storage_root=storage,
        config_path=config_path,
        log_path=workdir / "registry.log",
        extra_config=extra_config or {},
    )
    registry.start()
    return registry
