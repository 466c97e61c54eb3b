"""The access log's hash chain: how a row's hash is made, and how a chain is checked.

Each access-log writer (one per gatekeeper process) keeps one chain. Row ``n`` of a chain
carries ``row_hash = SHA-256(hash of row n-1 + "\\n" + canonical JSON of row n)``, where the
canonical JSON is the row's content with its chain and position, keys sorted, no spaces
(:func:`content`). Position 0 is the chain's opening checkpoint: its hash (the *anchor*) is
the SHA-256 of the newest signed checkpoint's payload when the chain opened (any chain's), or
64 zeros for the first chain of a database, so deleting a whole earlier run breaks the chain
that came after it.

Signed checkpoints (``proxy/attest/checkpoints.py``) state "position ``seq`` of chain ``c`` had
hash ``h`` at time ``t``". Whoever can write the database can recompute hashes, so the chain
alone only catches a careless edit; rows up to a checkpoint are protected by the gatekeeper's
signature, rows after the newest one by the chain only. Everything here is pure (no database):
``gatekeeper audit verify`` feeds it rows from the database or from an export alike. It lives
in ``storage`` beside the rows it describes (``storage/audit_chain.py`` writes them with it);
``proxy``'s checkpoint signer and the CLI import it from here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
"""The anchor of a chain opened before any checkpoint existed."""
CHECKPOINT_TYPE = "application/vnd.registry-gatekeeper.audit-checkpoint.v1+json"
"""The DSSE payload type of a checkpoint (a summary's envelope can never pass for one)."""
FIELDS = (
    "time",
    "request_id",
    "client_addr",
    "identity",
    "method",
    "path",
    "action",
    "repository",
    "reference",
    "digest",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_status",
    "decision",
    "reason",
    "error_code",
)
"""The columns a row's hash covers: all of them but its database id."""


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat(timespec="microseconds")
    return str(value)


def content(values: Mapping[str, Any], chain: str, seq: int) -> dict[str, Any]:
    """The hashed form of a row: values as stored, times as UTC ISO 8601 with microseconds,
    the duration as a string with three decimals (so no float formatting differs between
    the writer, the database driver and a third party's verifier)."""
    out: dict[str, Any] = {"chain": chain, "seq": seq}
    for name in FIELDS:
        value = values.get(name)
        if name == "time":
            value = _time(value)
        elif name == "duration_ms":
            value = f"{float(value or 0):.3f}"
        out[name] = value
    return out


def row_hash(previous: str, hashed: Mapping[str, Any]) -> str:
    """The hash of a row whose :func:`content` is ``hashed``, following ``previous``."""
    body = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()


def payload_hash(payload: bytes) -> str:
    """A checkpoint's identity as a later chain's anchor names it."""
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature verified: position ``seq`` of ``chain`` had ``hash``."""

    chain: str
    seq: int
    hash: str
    time: str
    payload_hash: str


@dataclass(frozen=True)
class Row:
    """A row as verification reads it: its id, place in a chain, stored hash and content."""

    id: int
    chain: str | None
    seq: int | None
    hash: str | None
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Problem:
    """Something that is not as the gatekeeper wrote it; ``row`` is the row it is named by
    (None for a problem with no row to name, such as a whole chain missing)."""

    row: int | None
    message: str


@dataclass
class _ChainState:
    expected: int
    previous: str
    last_id: int | None
    broken: bool = False


@dataclass
class Report:
    """What a verification found: problems (first the one with the lowest row id) and counts."""

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    legacy: int = 0
    chains: int = 0
    checkpoints: int = 0
    pruned: dict[str, int] = field(default_factory=dict)
    """Per chain, the rows before its first present one (removed by retention, from a
    signed checkpoint)."""
    after_last_checkpoint: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def first(self) -> Problem | None:
        named = [p for p in self.problems if p.row is not None]
        if named:
            return min(named, key=lambda p: p.row or 0)
        return self.problems[0] if self.problems else None


def verify(
    rows: Iterable[Row],
    checkpoints: Iterable[Checkpoint],
    *,
    legacy_max_id: int = 0,
) -> Report:
    """:class:`ChainCheck` over ``rows`` (in id order) at once."""
    check = ChainCheck(checkpoints, legacy_max_id=legacy_max_id)
    for row in rows:
        check.add(row)
    return check.finish()


class ChainCheck:
    """Walks rows (fed in id order, so a table of any size streams through) against the
    verified checkpoints.

    A chain's rows must have positions 1, 2, 3... in id order, each hash must follow from the
    previous one and the row's content, and every checkpoint's hash must be the hash of its
    row. A chain whose first present row is not position 1 must start right after a signed
    checkpoint (retention removed what came before); a chain must have a signed opening
    checkpoint whose anchor is another verified checkpoint (or the genesis). Only the first
    problem of each chain is reported: everything after a break follows from it.
    """

    def __init__(self, checkpoints: Iterable[Checkpoint], *, legacy_max_id: int = 0) -> None:
        self._legacy_max_id = legacy_max_id
        self._by_position = {(c.chain, c.seq): c for c in checkpoints}
        self._anchors = {c.payload_hash for c in self._by_position.values()}
        self._newest: dict[str, int] = {}
        for checkpoint in self._by_position.values():
            if checkpoint.seq > self._newest.get(checkpoint.chain, -1):
                self._newest[checkpoint.chain] = checkpoint.seq
        self._states: dict[str, _ChainState] = {}
        self.report = Report(checkpoints=len(self._by_position))

    def _problem(self, chain: str, row: int | None, message: str) -> None:
        self._states[chain].broken = True
        self.report.problems.append(Problem(row, message))

    def add(self, row: Row) -> None:
        report = self.report
        report.rows += 1
        if row.chain is None or row.seq is None or row.hash is None:
            if row.id <= self._legacy_max_id:
                report.legacy += 1
            else:
                report.problems.append(
                    Problem(row.id, f"row {row.id} was inserted: it is in no chain")
                )
            return
        state = self._states.get(row.chain)
        if state is None:
            state = self._states[row.chain] = _open(row, self._by_position, self._anchors, report)
            if state.broken:
                return
        if state.broken:
            return
        if row.seq != state.expected:
            self._problem(row.chain, row.id, _misplaced(row, state))
            return
        computed = row_hash(state.previous, content(row.values, row.chain, row.seq))
        signed = self._by_position.get((row.chain, row.seq))
        if signed is not None and signed.hash != row.hash:
            self._problem(
                row.chain,
                row.id,
                f"row {row.id} was changed: its hash is not the one the signed checkpoint of "
                f"{signed.time} names for position {row.seq} of chain {row.chain}",
            )
            return
        if computed != row.hash:
            self._problem(
                row.chain,
                row.id,
                f"row {row.id} was changed: its content and the previous row's hash do not give "
                f"its hash (position {row.seq} of chain {row.chain}"
                + (f"; or row {state.last_id} before it was)" if state.last_id else ")"),
            )
            return
        state.previous, state.expected, state.last_id = row.hash, row.seq + 1, row.id
        if row.seq > self._newest.get(row.chain, 0):
            report.after_last_checkpoint += 1

    def finish(self) -> Report:
        report = self.report
        report.chains = len(self._states)
        for chain, state in self._states.items():
            last = self._newest.get(chain, 0)
            if not state.broken and state.expected <= last:
                report.problems.append(
                    Problem(
                        state.last_id,
                        f"rows after row {state.last_id} were deleted: the signed checkpoint "
                        f"of chain {chain} names position {last}, the last row present is "
                        f"position {state.expected - 1}",
                    )
                )
        for chain, last in self._newest.items():
            if chain not in self._states and last > 0:
                # No row left before or after its newest checkpoint: all were pruned (or
                # deleted, which a checkpoint cannot tell apart; the count says how many).
                report.pruned[chain] = last
        report.problems.sort(key=lambda p: (p.row is None, p.row or 0))
        return report


def _open(
    row: Row,
    by_position: Mapping[tuple[str, int], Checkpoint],
    anchors: set[str],
    report: Report,
) -> _ChainState:
    """The state a chain's first present row is checked against."""
    assert row.chain is not None and row.seq is not None
    opening = by_position.get((row.chain, 0))
    if opening is None:
        report.problems.append(
            Problem(
                row.id,
                f"row {row.id} was inserted: its chain {row.chain} has no signed opening "
                "checkpoint",
            )
        )
        return _ChainState(0, "", None, broken=True)
    if opening.hash != GENESIS and opening.hash not in anchors:
        report.problems.append(
            Problem(
                row.id,
                f"rows before row {row.id} were deleted: its chain {row.chain} opened after a "
                "signed checkpoint that is no longer there (a whole earlier chain is gone)",
            )
        )
        return _ChainState(0, "", None, broken=True)
    if row.seq == 1:
        return _ChainState(1, opening.hash, None)
    start = by_position.get((row.chain, row.seq - 1))
    if start is None:
        report.problems.append(
            Problem(
                row.id,
                f"rows before row {row.id} were deleted: it is position {row.seq} of chain "
                f"{row.chain} and no signed checkpoint names position {row.seq - 1}",
            )
        )
        return _ChainState(0, "", None, broken=True)
    report.pruned[row.chain] = row.seq - 1
    return _ChainState(row.seq, start.hash, None)


def _misplaced(row: Row, state: _ChainState) -> str:
    after = f"after row {state.last_id}" if state.last_id else "at the start of its chain"
    if row.seq is not None and row.seq > state.expected:
        missing = row.seq - state.expected
        return (
            f"{missing} row{'s' if missing > 1 else ''} deleted before row {row.id} ({after}: "
            f"positions {state.expected}-{row.seq - 1} of chain {row.chain} are missing)"
        )
    return (
        f"row {row.id} was inserted or reordered: it claims position {row.seq} of chain "
        f"{row.chain}, {after} position {state.expected} was expected"
    )
