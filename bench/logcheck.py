"""Hold the gatekeeper's access log against the requests a load run sent: one row each.

The gatekeeper answers every request with ``X-Request-Id`` and writes a row with that id, so a
row is matched to its request by id, then checked for the same method, path and status. A
request with no row, a request with two, a row no request of the run explains, a row with other
facts than its request, and a response without an id are all reported, by kind and with a few
examples, so a failing run says what went wrong and not only that it did.

Pure functions over plain values: :mod:`tests.e2e.test_load_smoke` drives them with a real
gatekeeper's rows and with rows tampered with, to prove a missing row is caught.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.traffic import Sent

Row = Mapping[str, Any]
EXAMPLES = 5
"""Examples kept per kind of problem; the counts are always complete."""


@dataclass(frozen=True)
class LogCheck:
    """How the access log compares with the requests sent."""

    requests: int
    rows: int
    without_id: tuple[str, ...]
    """Requests whose response carried no ``X-Request-Id`` (count is ``len``, all kept)."""
    missing: tuple[str, ...]
    """Requests with no row."""
    duplicated: tuple[str, ...]
    """Requests with more than one row."""
    mismatched: tuple[str, ...]
    """Requests whose one row says another method, path or status."""
    unexplained: tuple[str, ...]
    """Rows whose request id no request of the run received."""

    @property
    def ok(self) -> bool:
        return not (
            self.without_id
            or self.missing
            or self.duplicated
            or self.mismatched
            or self.unexplained
        )

    def describe(self) -> str:
        """One line when all is well, else one line per kind of problem with examples."""
        head = f"{self.requests} requests, {self.rows} access-log rows"
        if self.ok:
            return f"{head}: exactly one matching row per request"
        parts = [head + ":"]
        for label, items in (
            ("responses without X-Request-Id", self.without_id),
            ("requests without a row", self.missing),
            ("requests with several rows", self.duplicated),
            ("rows with other facts than their request", self.mismatched),
            ("rows no request explains", self.unexplained),
        ):
            if items:
                parts.append(f"  {len(items)} {label}, e.g. {'; '.join(items[:EXAMPLES])}")
        return "\n".join(parts)


def check_log(sent: Sequence[Sent], rows: Iterable[Row]) -> LogCheck:
    """Compare ``sent`` (every request of the run) with ``rows`` (every row the run wrote).

    Requests that got no response at all (status 0) may or may not have reached the server, so
    they are not expected to have a row; they are errors of the run already.
    """
    answered = [item for item in sent if item.status != 0]
    rows = list(rows)
    by_id: dict[str, list[Row]] = {}
    for row in rows:
        by_id.setdefault(str(row["request_id"]), []).append(row)
    without_id, missing, duplicated, mismatched = [], [], [], []
    for item in answered:
        label = f"{item.method} {item.path} -> {item.status}"
        if not item.request_id:
            without_id.append(label)
            continue
        found = by_id.get(item.request_id, [])
        if not found:
            missing.append(f"{label} [{item.request_id}]")
        elif len(found) > 1:
            duplicated.append(f"{label} [{item.request_id}] x{len(found)}")
        elif (problem := _differs(item, found[0])) is not None:
            mismatched.append(f"{label} [{item.request_id}]: {problem}")
    known = Counter(item.request_id for item in answered if item.request_id)
    unexplained = [
        f"{row['method']} {row['path']} -> {row['status']} [{row['request_id']}]"
        for row in rows
        if str(row["request_id"]) not in known
    ]
    return LogCheck(
        requests=len(answered),
        rows=len(rows),
        without_id=tuple(without_id),
        missing=tuple(missing),
        duplicated=tuple(duplicated),
        mismatched=tuple(mismatched),
        unexplained=tuple(unexplained),
    )


def _differs(item: Sent, row: Row) -> str | None:
    logged = (str(row["method"]), str(row["path"]).split("?", 1)[0], int(row["status"]))
    if logged == (item.method, item.path, item.status):
        return None
    return f"row says {logged[0]} {logged[1]} -> {logged[2]}"
