"""What every admin handler shares: services, validated inputs, JSON out.

Inputs are checked here once: a malformed request (not JSON, a bad path or query parameter) is
400, and JSON whose fields fail validation is 422 with every bad field named, so an operator's
script learns exactly what to fix.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from config.text import check_plain
from oci import boundedjson
from oci.errors import OCIError
from proxy.admin.access import require
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.models import FieldError, Out, Verdict
from proxy.context import info
from proxy.names import check_digest, check_name, check_raw_path
from proxy.state import SERVICES, Services
from storage import verdicts
from storage.verdicts import VerdictView
from verifiers.lifecycle import State

M = TypeVar("M", bound=BaseModel)

MAX_LIMIT = 1000
STATES = tuple(s.value for s in State)


def services(request: web.Request) -> Services:
    """The process's services; ``config_dict`` because the admin API is a sub-application."""
    return request.config_dict[SERVICES]


def ok(data: Out, status: int = 200) -> web.Response:
    """A JSON answer, always through a response model (``proxy.admin.models``): the models
    generate the OpenAPI document, so nothing is served that it does not describe."""
    return web.Response(
        status=status,
        body=json.dumps(data.model_dump(mode="json"), separators=(",", ":")).encode(),
        content_type="application/json",
    )


# -- path ------------------------------------------------------------------------------------


def image_ref(request: web.Request) -> tuple[str, str]:
    """``REPOSITORY@DIGEST`` from the path (the repository may contain slashes), validated with
    the registry's own grammar, recorded for the access log, and checked against the caller's
    scope for this route before anything is looked up (403 outside it)."""
    try:
        # Dot segments are normalised away before routing; refuse them so the action lands
        # on the repository the operator actually typed.
        check_raw_path(request.raw_path)
    except OCIError as exc:
        raise AdminError(AdminCode.NAME_INVALID, exc.message) from exc
    ref = request.match_info["reference"]
    repository, at, digest = ref.rpartition("@")
    if not at:
        raise AdminError(
            AdminCode.BAD_REQUEST,
            f"expected REPOSITORY@DIGEST, got {ref[:300]!r} (for example library/app@sha256:...)",
        )
    try:
        check_name(repository)
        check_digest(digest)
    except OCIError as exc:
        code = (
            AdminCode.NAME_INVALID if exc.code.code == "NAME_INVALID" else AdminCode.DIGEST_INVALID
        )
        raise AdminError(code, exc.message) from exc
    record = info(request)
    record.repository, record.digest = repository, digest
    require(request, repository)
    return repository, digest


# -- body ------------------------------------------------------------------------------------


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse the JSON body into ``model``; an empty body counts as ``{}``."""
    raw = await request.read()
    try:
        data = boundedjson.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise AdminError(AdminCode.BAD_REQUEST, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AdminError(AdminCode.BAD_REQUEST, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_fields(exc) from exc


def invalid_fields(exc: ValidationError) -> AdminError:
    """A 422 naming every bad field (``policies.0.mode: Input should be ...``)."""
    details = [
        FieldError(field=".".join(str(p) for p in err["loc"]) or "(body)", message=err["msg"])
        for err in exc.errors(include_url=False, include_input=False)
    ]
    message = "; ".join(f"{d.field}: {d.message}" for d in details[:5])
    return AdminError(AdminCode.INVALID_FIELD, message, details=details)


def actor(request: web.Request, named: str | None, reason: str | None) -> str:
    """The actor recorded for an admin action: the authenticated principal, qualified by the
    person the body names (``admin-token:alice``), also written on the request's own row."""
    record = info(request)
    who = f"{record.identity}:{named}" if named else record.identity
    record.identity = who
    if reason:
        record.reason = reason
    return who


# -- query -----------------------------------------------------------------------------------


def query_str(request: web.Request, key: str, max_length: int = 255) -> str | None:
    value = request.query.get(key)
    if value is None or value == "":
        return None
    if len(value) > max_length:
        raise AdminError(AdminCode.BAD_REQUEST, f"{key}: at most {max_length} characters")
    # No filter value (a name, an action, a digest, a state) holds a control character, and
    # PostgreSQL cannot even compare text with a NUL: the query would fail as a 503.
    try:
        return check_plain(value)
    except ValueError as exc:
        raise AdminError(AdminCode.BAD_REQUEST, f"{key}: {exc}") from None


def query_int(
    request: web.Request, key: str, default: int | None, low: int, high: int
) -> int | None:
    value = query_str(request, key, 20)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise AdminError(AdminCode.BAD_REQUEST, f"{key}: an integer from {low} to {high}")
    return number


def query_limit(request: web.Request) -> int:
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    assert limit is not None
    return limit


def query_repository(request: web.Request) -> str | None:
    value = query_str(request, "repository")
    if value is None:
        return None
    try:
        return check_name(value)
    except OCIError as exc:
        raise AdminError(AdminCode.NAME_INVALID, exc.message) from exc


def query_state(request: web.Request) -> str | None:
    value = query_str(request, "state")
    if value is not None and value not in STATES:
        raise AdminError(AdminCode.BAD_REQUEST, f"state: one of {', '.join(STATES)}")
    return value


def query_time(request: web.Request, key: str) -> datetime | None:
    value = query_str(request, key, 64)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("no zone offset")
        return moment.astimezone(UTC)  # the database compares UTC times
    except (ValueError, OverflowError) as exc:
        raise AdminError(
            AdminCode.BAD_REQUEST,
            f"{key}: an ISO 8601 time with a zone offset, for example 2030-01-31T12:00:00Z",
        ) from exc


# -- out -------------------------------------------------------------------------------------


def verdict_out(verdict: VerdictView) -> Verdict:
    return Verdict(
        repository=verdict.repository,
        digest=verdict.digest,
        state=verdict.state,
        effective_state=verdict.effective_state(),
        pullable=verdict.pullable(),
        reasons=list(verdict.reasons),
        policy=verdict.policy,
        policy_version=verdict.policy_version,
        data_versions=verdict.data_versions,
        released_by=verdict.released_by,
        release_reason=verdict.release_reason,
        release_expires=verdict.release_expires,
        decided_at=verdict.decided_at,
        updated_at=verdict.updated_at,
        trigger=verdict.trigger,
        held_by=verdict.held_by,
        origin=verdict.origin,
    )


async def verdict_pages(
    svc: Services, repository: str | None, size: int = 500
) -> AsyncIterator[list[VerdictView]]:
    """Every verdict (of one repository, or all), a page at a time, each page read in its own
    short session so a long walk never holds a transaction open."""
    after: tuple[str, str] | None = None
    while True:
        async with svc.db() as session:
            batch = await verdicts.page(session, repository=repository, after=after, limit=size)
        if not batch:
            return
        yield batch
        after = (batch[-1].repository, batch[-1].digest)
